"""Secrets beyond the HF token of a MegatronBridge sweep: a token in `extra_env_vars` (under any name, or inside
another value) reaches the job through its inherited environment and never a pickle or any other file; a
sweep named with a token is refused; error messages never echo a token."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_toml

TOKEN = "hf_EXTRAsecretEXTRA0123456789abcdefXYZ"
PLAIN = "plainSecretValue0123"  # a resolved HF token without the hf_ prefix: only known by its value

# The job records a digest of each variable it was asked to check, and which dse carriers it could see.
JOB = """
import hashlib, json, os, sys
names = sys.argv[2:]
seen = {n: hashlib.sha256(os.environ[n].encode()).hexdigest() if n in os.environ else None for n in names}
carriers = sorted(k for k in os.environ if k.startswith("DSE_SECRET"))
json.dump({"seen": seen, "carriers": carriers}, open("seen.json", "w"))
json.dump({"step-time": float(sys.argv[1])}, open("metrics.json", "w"))
"""


def dse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env=env if env is not None else os.environ.copy())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _files_with(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _command_sweep(tmp_path: Path, env_vars: dict[str, str], name: str = "sec") -> Path:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    names = " ".join(env_vars)
    lines = [f"name = {json.dumps(name)}", 'test_template_name = "Command"', 'agent = "grid_search"',
             'agent_metrics = ["step-time"]', "[cmd_args]",
             f"command = {json.dumps(f'{sys.executable} {job} {{x}} {names}')}", "x = [1, 2]",
             "[extra_env_vars]", *(f"{k} = {json.dumps(v)}" for k, v in env_vars.items())]
    return write_toml(tmp_path / f"{name}.toml", "\n".join(lines) + "\n")


@pytest.mark.parametrize("env_vars, secret, hf_token", [
    ({"MY_TOKEN": TOKEN, "PLAIN_VAR": "visible"}, TOKEN, None),  # a secret name
    ({"ARGS": f"--token={TOKEN} --verbose"}, TOKEN, None),  # a token inside another value
    ({"ARGS": f"--key {PLAIN}"}, PLAIN, PLAIN),  # the resolved HF token's own value, under a plain name
], ids=["secret-name", "token-in-value", "resolved-hf-token"])
def test_env_secret_reaches_job_but_no_file(tmp_path: Path, env_vars: dict[str, str], secret: str,
                                            hf_token: str | None) -> None:
    env = os.environ.copy()
    if hf_token:
        env["HF_TOKEN"] = hf_token
    out, cache = tmp_path / "runs", tmp_path / "cache" / "cache.db"
    sweep = _command_sweep(tmp_path, env_vars)
    r = dse("run", str(sweep), "--out", str(out), "--cache", str(cache), "--parallel", "2", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(out.iterdir())
    pickles = list(run.rglob("*_submitted.pkl"))
    assert len(pickles) == 2  # the jobs' pickles exist and are searched below
    for trial in ("1", "2"):
        seen = json.loads((run / "trials" / trial / "seen.json").read_text())
        assert seen["seen"] == {k: _digest(v) for k, v in env_vars.items()}  # the job got every real value
        assert seen["carriers"] == []  # and only under the names the sweep gave
    printed = [r.stdout, r.stderr]
    for cmd in (["report", str(run)], ["table", str(run)], ["best", str(run), "--toml"], ["status", str(run)]):
        more = dse(*cmd, env=env)
        assert more.returncode == 0, more.stderr
        printed += [more.stdout, more.stderr]
    assert (run / "report.html").is_file()
    assert [t for t in printed if secret in t] == []
    assert _files_with(run, secret) == [] and _files_with(cache.parent, secret) == []


def test_jobspec_pickle_holds_no_secret_and_run_job_restores_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.engine._executors import run_job
    from dse.workloads import JobSpec

    out = tmp_path / "env.json"
    prog = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    spec = JobSpec(argv=[sys.executable, "-c", prog], cwd=str(tmp_path),
                   env={"MY_TOKEN": TOKEN, "ARGS": f"--token={TOKEN}", "OPEN": "1"})
    spec = dataclasses.replace(spec, num_nodes=1)  # a copy (as executors make) keeps the secrets' names
    blob = pickle.dumps(spec)
    assert TOKEN.encode() not in blob and TOKEN not in spec.script()
    assert spec.env == {"OPEN": "1"} and set(spec.secret_env) == {"MY_TOKEN", "ARGS"}
    assert run_job(pickle.loads(blob)) == 0  # what submitit runs: the unpickled spec, in the inherited env
    job_env = json.loads(out.read_text())
    assert (job_env["MY_TOKEN"], job_env["ARGS"], job_env["OPEN"]) == (TOKEN, f"--token={TOKEN}", "1")
    assert not [k for k in job_env if k.startswith("DSE_SECRET")]


def test_run_job_without_the_inherited_secret_fails_clearly(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.engine._executors import run_job
    from dse.workloads import JobSpec

    spec = JobSpec(argv=[sys.executable, "-c", "pass"], cwd=str(tmp_path), env={"MY_TOKEN": TOKEN})
    for carrier in set(spec.secret_env.values()):
        monkeypatch.delenv(carrier)
    assert run_job(spec) != 0
    err = (tmp_path / "stderr.log").read_text()
    assert "MY_TOKEN" in err and "environment" in err and TOKEN not in err


# ---- names and messages ---------------------------------------------------------------------------------
SIM = ('test_template_name = "MegatronBridgeSim"\n{extra}[cmd_args]\ngpu_type = "h100"\nnum_gpus = 8\n'
       'model_recipe_name = "llama3_8b"\ntp = {tp}\n')


def _refused(r: subprocess.CompletedProcess[str], path: Path, field: str, secret: str = TOKEN) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: "), r.stderr
    assert secret not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["space", "run"])
def test_sweep_named_with_token_is_refused_without_echo(tmp_path: Path, command: str) -> None:
    path = write_toml(tmp_path / "n.toml", f'name = "run_{TOKEN}"\n' + SIM.format(extra="", tp="[1, 2]"))
    out, cache = tmp_path / "runs", tmp_path / "cache.db"
    extra = ["--out", str(out), "--cache", str(cache)] if command == "run" else []
    r = dse(command, str(path), *extra)
    _refused(r, path, "name")
    assert not out.exists() and not cache.exists()


def test_scenario_named_with_token_is_refused_without_echo(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "s.toml", f'name = "s_{TOKEN}"\n[[Tests]]\nid = "a"\nname = "t"\n'
                      + SIM.format(extra="", tp="[1, 2]").replace("[cmd_args]", "[Tests.cmd_args]"))
    r = dse("space", str(path))
    _refused(r, path, "name")


def test_agent_option_with_token_is_refused_without_echo(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "a.toml", 'name = "a"\n' + SIM.format(extra="", tp="[1, 2]"))
    out = tmp_path / "runs"
    r = dse("run", str(path), "--agent", TOKEN, "--out", str(out), "--cache", str(tmp_path / "c.db"))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--agent" in lines[0], r.stderr
    assert TOKEN not in r.stdout + r.stderr and not out.exists()


def test_agent_field_with_token_is_refused_without_echo(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "a.toml", 'name = "a"\n' + SIM.format(extra=f'agent = "{TOKEN}"\n', tp="[1, 2]"))
    _refused(dse("space", str(path)), path, "agent")


@pytest.mark.parametrize("value, hf_token", [(TOKEN, None), (PLAIN, PLAIN)], ids=["hf-pattern", "resolved-value"])
def test_cmd_args_list_value_with_token_is_not_echoed(tmp_path: Path, value: str, hf_token: str | None) -> None:
    env = os.environ.copy()
    if hf_token:
        env["HF_TOKEN"] = hf_token
    path = write_toml(tmp_path / "b.toml", 'name = "b"\n' + SIM.format(extra="", tp=f'[1, "{value}"]'))
    r = dse("space", str(path), env=env)
    _refused(r, path, "cmd_args.tp", secret=value)
    assert "Input should be a valid integer" in r.stderr  # the message itself is kept


def test_error_rendering_scrubs_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.errors import DseError, InputError

    monkeypatch.setenv("HF_TOKEN", PLAIN)
    err = InputError(f"unknown agent '{TOKEN}', also {PLAIN}", file=f"/x/{TOKEN}.toml", field=f"cmd_args.{PLAIN}")
    assert TOKEN not in str(err) and PLAIN not in str(err) and str(err).startswith("error: /x/")
    assert "unknown agent" in str(err)
    assert TOKEN not in str(err.with_file("f.toml")) and TOKEN not in str(DseError(f"failed: {TOKEN}"))


def test_simulated_sweep_secrets_reach_no_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "sim.toml", 'name = "sim"\n' + SIM.format(extra="", tp="[1, 2]")
                      + f'wandb_key = "{TOKEN}"\n[extra_env_vars]\nMY_TOKEN = "{TOKEN}"\nARGS = "--token={TOKEN}"\n')
    out, cache = tmp_path / "runs", tmp_path / "cache" / "cache.db"
    r = dse("run", str(path), "--out", str(out), "--cache", str(cache))
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(out.iterdir())
    assert set(json.loads((run / "trials" / "1" / "simulation_input.json").read_text())["cmd_args"]) >= {"tp"}
    assert TOKEN not in r.stdout + r.stderr
    assert _files_with(run, TOKEN) == [] and _files_with(cache.parent, TOKEN) == []
