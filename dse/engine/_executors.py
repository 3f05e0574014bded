"""Executors over submitit: `local` (the embedded default), `slurm` (from the system TOML) and `debug`.

Every executor runs the same job function, `run_job`, which starts the workload's program with its
stdout/stderr in the trial folder and enforces the time limit. Secrets are not in the pickled job: the
job inherits them from the driver's environment (see `JobSpec.secret_env`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import submitit

from dse.engine._launched_jobs import LaunchedJob
from dse.spec import SystemConfig
from dse.timelimit import parse_time_limit
from dse.workloads import SECRET_CARRIER_PREFIX, STDERR, STDOUT, JobSpec

TIMEOUT_RC = 124
PROGRAM_FILE = "program.json"  # in the trial folder: the pid and start time of the trial's program
MISSING_SECRET_RC = 1  # a secret the job needs was not in its inherited environment


def run_job(spec: JobSpec) -> int:
    """The job body: run the program, return its exit code (124 when it ran past its time limit).

    The program's environment is the one the job inherited, plus `spec.env`, plus each of `spec.secret_env`
    taken from the inherited carrier variable the driver set (the carriers themselves are not passed on).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_CARRIER_PREFIX)}
    env.update(spec.env)
    secret_env = getattr(spec, "secret_env", None) or {}
    missing = sorted(name for name, carrier in secret_env.items() if carrier not in os.environ)
    env.update({name: os.environ[carrier] for name, carrier in secret_env.items() if carrier in os.environ})
    cwd = Path(spec.cwd)
    with open(cwd / STDOUT, "w") as out, open(cwd / STDERR, "w") as err:
        if missing:
            err.write(f"[dse] not started: the secret environment variable(s) {', '.join(missing)} did not reach "
                      "the job; dse passes secrets only through the environment the job inherits from the "
                      "driver (a scheduler option such as --export=NONE drops it)\n")
            return MISSING_SECRET_RC
        cmd: Any = spec.argv[0] if spec.shell else spec.argv
        proc = subprocess.Popen(cmd, shell=spec.shell, cwd=cwd, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        note_program(cwd, proc.pid)
        terminated, previous = _forward_sigterm(proc)
        try:
            rc = proc.wait(timeout=spec.time_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            err.write(f"\n[dse] killed: exceeded the time limit of {spec.time_limit_s:.0f} s\n")
            return TIMEOUT_RC
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if terminated:  # the scheduler ended the job (scancel, preemption): whatever the program made of it
            err.write("\n[dse] terminated by the scheduler (SIGTERM)\n")
            return 128 + signal.SIGTERM
        return rc


def _forward_sigterm(proc: subprocess.Popen[Any]) -> tuple[list[int], Any]:
    """On SIGTERM to the job (scancel, preemption), terminate the program's whole session and remember it.

    Slurm may signal only some of the program's processes (a shell's `sleep`, not the shell), and the
    program may then finish "successfully"; a terminated job is a preempted one, retried by policy.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return seen, None

    def handle(signum: int, frame: Any) -> None:
        seen.append(signum)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)

    return seen, signal.signal(signal.SIGTERM, handle)


@dataclass
class JobResult:
    returncode: int | None
    state: str  # completed | failed | timeout | preempted | node-failure | out-of-memory
    message: str = ""


class JobHandle:
    """A submitted job: poll `done()`, then read `result()`."""

    def __init__(self, job: Any) -> None:
        self.job = job

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def done(self) -> bool:
        try:
            return bool(self.job.done())
        except Exception:  # a job whose state cannot be read yet is not done
            return False

    def result(self) -> JobResult:
        state = str(getattr(self.job, "state", "") or "").upper()
        try:
            rc = int(self.job.result())
        except Exception as exc:  # submitit raises for killed, cancelled, timed-out jobs
            msg = " ".join(str(exc).split())[:300]
            return JobResult(None, _state_of(state, msg), msg)
        if rc == TIMEOUT_RC:
            return JobResult(rc, "timeout")
        if rc in (-signal.SIGTERM, 128 + signal.SIGTERM) and self.job_id.isdigit() and _slurm_job(self.job):
            # the scheduler terminated the program (scancel, preemption): transient, retried by policy
            return JobResult(rc, "preempted", "terminated by the scheduler (SIGTERM)")
        return JobResult(rc, "completed")

    def cancel(self) -> None:
        """Stop the job. A local job gets SIGTERM, which `run_job` passes to the program's whole session:
        submitit's own local cancel sends SIGINT, which a dse job blocks (a Ctrl-C is the driver's alone)."""
        process = getattr(self.job, "_process", None)
        if process is not None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
            return
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


class LaunchedJobHandle(JobHandle):
    """A launcher run on the submit host and the Slurm job it submitted (see dse.engine._launched_jobs)."""

    def __init__(self, launched: LaunchedJob) -> None:
        super().__init__(launched)
        self.launched = launched

    @property
    def job_id(self) -> str:
        return self.launched.job_id

    def done(self) -> bool:
        return self.launched.done()

    def result(self) -> JobResult:
        rc, state, message = self.launched.result()
        return JobResult(rc, state, message)

    def cancel(self) -> None:
        self.launched.cancel()


def _slurm_job(job: Any) -> bool:
    return isinstance(job, submitit.SlurmJob)


def _state_of(state: str, msg: str) -> str:
    text = f"{state} {msg}".upper()
    if "TIMEOUT" in text:
        return "timeout"
    if "PREEMPT" in text or "CANCEL" in text:
        return "preempted"
    if "NODE_FAIL" in text or "NODE FAIL" in text:
        return "node-failure"
    return "failed"


class Executor:
    """Submits `run_job(spec)` through a submitit executor whose folder is the trial's folder."""

    def __init__(self, kind: str, system: SystemConfig) -> None:
        self.kind = kind
        self.system = system

    def _make(self, folder: Path, spec: JobSpec) -> Any:
        limit_min = max(1, math.ceil((spec.time_limit_s or 0) / 60) + 1) if spec.time_limit_s else None
        if self.kind == "debug":
            return submitit.DebugExecutor(folder=folder)
        if self.kind == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=limit_min or 60 * 24)
            return ex
        sys_cfg = self.system
        slurm = submitit.SlurmExecutor(folder=folder)
        params: dict[str, Any] = {"nodes": spec.num_nodes, "ntasks_per_node": 1, "job_name": "dse-trial"}
        if spec.gpus_per_node:
            params["gpus_per_node"] = spec.gpus_per_node
        if sys_cfg.partition:
            params["partition"] = sys_cfg.partition
        if sys_cfg.account:
            params["account"] = sys_cfg.account
        if sys_cfg.cpus_per_task:
            params["cpus_per_task"] = sys_cfg.cpus_per_task
        if sys_cfg.mem_gb:
            params["mem"] = f"{sys_cfg.mem_gb}G"
        # Slurm's limit and submitit's USR2 warning (signal_delay_s before it) come a minute after dse's own
        # kill at the time limit, so a job past its limit always ends as dse's timeout, never as a signal race
        time_min = limit_min + 1 if limit_min else (parse_time_limit(sys_cfg.time_limit) if sys_cfg.time_limit
                                                    else None)
        params["signal_delay_s"] = 60
        if time_min:
            params["time"] = time_min
        extra = {}
        for arg in sys_cfg.extra_sbatch_args:
            key, _, value = arg.lstrip("-").partition("=")
            extra[key] = value or None
        if extra:
            params["additional_parameters"] = extra
        if sys_cfg.extra_srun_args:
            params["srun_args"] = list(sys_cfg.extra_srun_args)
        slurm.update_parameters(**params)
        return slurm

    def submit(self, spec: JobSpec, folder: Path) -> JobHandle:
        if spec.submit_host:  # the program submits its own Slurm job: run it here, without an allocation
            local = Executor("debug" if self.kind == "debug" else "local", self.system)
            return LaunchedJobHandle(LaunchedJob(local.submit(_plain(spec), folder), folder.parent))
        ex = self._make(folder, spec)
        if self.kind != "local":
            return JobHandle(ex.submit(run_job, spec))
        with _terminal_sigint_blocked():  # the job's processes inherit the mask: a Ctrl-C reaches only the driver
            return JobHandle(ex.submit(run_job, spec))

    def attach(self, job_id: str | None, folder: Path, submit_host: bool = False) -> JobHandle | None:
        """Re-attach to a job submitted by an earlier driver (resume); `job_id` is None when a launcher died
        before printing the id of the job it submitted."""
        if submit_host:
            launcher = _live_local_job(folder)
            launched = LaunchedJob(launcher, folder.parent, slurm_id=job_id or None)
            return LaunchedJobHandle(launched) if launcher is not None or launched.job_id else None
        if not job_id:
            return None
        if self.kind == "slurm":
            return JobHandle(submitit.SlurmJob(folder=folder, job_id=job_id))
        if self.kind == "local" and job_id.isdigit():
            return JobHandle(_OrphanLocalJob(folder, job_id))
        return None


@contextlib.contextmanager
def _terminal_sigint_blocked() -> Iterator[None]:
    """SIGINT blocked while a local job is started: the blocked mask is inherited across fork and exec, so
    the job does not die of the Ctrl-C a terminal sends to the whole foreground process group. Blocked, not
    ignored: a Ctrl-C meant for the driver during the submission stays pending and is delivered after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _plain(spec: JobSpec) -> JobSpec:
    return replace(spec, submit_host=False)


def note_program(trial_dir: Path, pid: int) -> None:
    """Where the program runs, written when it starts. It has a session of its own (so that a cancel reaches
    all of it), so it outlives a driver killed with its whole process group; a resumed driver finds it here."""
    with contextlib.suppress(OSError):
        (trial_dir / PROGRAM_FILE).write_text(json.dumps({"pid": pid, "start": _start_time(pid)}))


def running_program(trial_dir: Path) -> int | None:
    """The pid of the trial's program when it is still the same process and still running, else None."""
    try:
        noted = json.loads((trial_dir / PROGRAM_FILE).read_text())
        pid = int(noted["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    start = _start_time(pid)
    return pid if start is not None and start == noted.get("start") else None  # not a reused pid, not a zombie


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _live_local_job(folder: Path) -> JobHandle | None:
    """The local job of an earlier driver in `folder` (submitit names its files by the job's pid), if alive."""
    pids = sorted({p.name.split("_")[0] for p in folder.glob("*_submitted.pkl") if p.name.split("_")[0].isdigit()})
    for pid in reversed(pids):
        job = _OrphanLocalJob(folder, pid)
        if not job.done() or job.paths.result_pickle.exists():
            return JobHandle(job)
    return None


class _OrphanLocalJob:
    """A local job whose driver died: it keeps running; its result pickle says how it ended.

    When the driver's whole process group was killed, the job's wrapper died with it but its program (a session
    of its own) runs on: the job is done when that program ends, and how it ended is then unknown (its metrics
    decide, as for a program without an exit code).
    """

    def __init__(self, folder: Path, job_id: str) -> None:
        self.job_id = job_id
        self.paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)
        self.trial_dir = Path(folder).parent
        self.state = ""

    def _alive(self) -> bool:
        return _start_time(int(self.job_id)) is not None

    def done(self) -> bool:
        if self.paths.result_pickle.exists():
            return True
        return not self._alive() and running_program(self.trial_dir) is None

    def result(self) -> Any:
        if not self.paths.result_pickle.exists():
            raise RuntimeError("the job's wrapper ended without a result (killed with its driver); its program, "
                               "if it had started, ran to its end")
        outcome, value = submitit.core.utils.pickle_load(self.paths.result_pickle)
        if outcome != "success":
            raise RuntimeError(str(value)[-300:])
        return value

    def cancel(self, check: bool = False) -> None:
        if self._alive():
            with contextlib.suppress(OSError):
                os.kill(int(self.job_id), signal.SIGTERM)  # run_job passes it to the program's session
        elif (program := running_program(self.trial_dir)) is not None:
            with contextlib.suppress(OSError):
                os.killpg(program, signal.SIGTERM)
