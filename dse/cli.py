"""The `dse` command (docs/DESIGN.md §5). Exit codes: 0 success, 1 a sweep with failures, 2 bad input.

The top of the layers: it composes the engine with the agents (`dse.agents.create_sweep_agent` is the engine's
agent factory). Each command imports what it needs inside its function, not for cycles (there are none: see
tests/test_layering.py) but for start-up time: `dse --help` or `dse status` need not load optuna, pandas and
matplotlib.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from dse.errors import DseError, InputError

EXIT_OK, EXIT_FAILURES, EXIT_BAD_INPUT = 0, 1, 2


def _add_sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", type=Path, help="a test TOML or a scenario TOML")
    p.add_argument("--system", type=Path, default=None, help="system TOML (default: this machine, local executor)")
    p.add_argument("--tests-dir", type=Path, default=None, help="directory of test TOMLs named by a scenario")
    p.add_argument("--test", dest="test_id", default=None, help="the [[Tests]] id to sweep in a scenario")


def _add_log_args(p: argparse.ArgumentParser, resume: bool = False) -> None:
    p.add_argument("--log-to", action="append", default=None, metavar="wandb|mlflow",
                   help="send each finished trial to Weights & Biases and/or MLflow (repeat, or wandb,mlflow; "
                        "the extras megatron-dse[wandb] / [mlflow])"
                        + ("; the run's own trackers are continued anyway" if resume else ""))
    p.add_argument("--wandb-project", default=None,
                   help="W&B project of a new W&B run (default $WANDB_PROJECT or dse)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dse",
        description="Design-space exploration for Megatron-Bridge training performance on Slurm.",
    )
    parser.add_argument("--version", action="version", version=f"dse {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("space", help="dimensions, sizes, valid count and what each rule prunes",
                       description="Explain a sweep's search space: dimensions, env_params, total and valid "
                                   "points, and how many points each parallelism rule prunes.")
    _add_sweep_args(p)
    p.add_argument("--json", action="store_true", help="the space as one JSON object")
    p.set_defaults(func=_cmd_space)

    p = sub.add_parser("dry-run", help="the first N trials' commands and job scripts; submits nothing",
                       description="Write and print the exact command and job script of the first N trials "
                                   "(in the agent's order) without submitting anything.")
    _add_sweep_args(p)
    p.add_argument("-n", type=int, default=3, help="number of trials to show (default 3)")
    p.add_argument("--out", type=Path, default=None, help="directory for the generated files (default: a temp dir)")
    p.add_argument("--agent", default=None, help="agent whose order to follow (default: the sweep's)")
    p.add_argument("--json", action="store_true", help="the trials, their scripts and where they were written")
    p.set_defaults(func=_cmd_dry_run)

    p = sub.add_parser("install", help="check out the pinned repos, the launcher's Python and the image",
                       description="Install what a sweep pins into $DSE_HOME (default ~/.cache/dse): each "
                                   "[[git_repos]] entry at its commit, a nemo_run venv for Megatron-Bridge's "
                                   "launcher (unless the system names a `launcher`), and the container image as "
                                   "a .sqsh where enroot exists. `dse run` does this before its first trial.")
    _add_sweep_args(p)
    p.add_argument("--json", action="store_true", help="the checkouts, the launcher and the image as JSON")
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("run", help="run a sweep", description="Run a sweep: the agent proposes trials, the "
                       "executor runs them, results land in RUN_DIR and in the shared cache.")
    _add_sweep_args(p)
    p.add_argument("--agent", default=None, help="agent name (default: the sweep's `agent`)")
    p.add_argument("--steps", type=int, default=None, help="number of trials (default: the sweep's agent_steps)")
    p.add_argument("--parallel", type=int, default=1, help="trials in flight at once (default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed for the agent and env_params draws")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent directory of the run dir (default runs/)")
    p.add_argument("--cache", type=Path, default=None,
                   help="result cache database (default $DSE_CACHE or ~/.cache/dse/cache.db)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default=None,
                   help="override the system's scheduler (debug runs in-process, for tests)")
    p.add_argument("--time-scale", type=float, default=None,
                   help="simulator only: sleep this fraction of the simulated run time")
    p.add_argument("--early-stopping", action="store_true",
                   help="stop running trials whose step time is confidently slower than the best trial's "
                        "(settings: an [early_stopping] table in the sweep)")
    p.add_argument("--json", action="store_true",
                   help="progress to stderr; at the end one JSON object on stdout: the run dir, the exit code, "
                        "the trials by kind, the GPU-hours and the best trial (as `dse status --json`)")
    _add_log_args(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("resume", help="finish an interrupted sweep",
                       description="Finish a sweep whose driver died: finished trials are kept, jobs still "
                                   "running are re-attached and collected, the rest is run.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--parallel", type=int, default=None, help="trials in flight (default: as the run had)")
    p.add_argument("--json", action="store_true",
                   help="progress to stderr; at the end one JSON object on stdout: the run dir, the exit code, "
                        "the trials by kind, the GPU-hours and the best trial (as `dse status --json`)")
    _add_log_args(p, resume=True)
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("export", help="send a finished run's trials to W&B or MLflow",
                       description="Send every finished trial of a run to Weights & Biases and/or MLflow, as "
                                   "`dse run --log-to` does live; trials sent before are not sent again.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--to", action="append", required=True, metavar="wandb|mlflow",
                   help="the tracker(s): repeat, or wandb,mlflow")
    p.add_argument("--wandb-project", default=None, help="W&B project (default $WANDB_PROJECT or dse)")
    p.add_argument("--json", action="store_true", help="what each tracker was sent, as a JSON list")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("status", help="counts by status, best so far, jobs in flight")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("compare", help="several runs side by side: agent, trials, best, speed-up, GPU-hours",
                       description="One row per run: its agent, trials, best trial and step time, speed-up over "
                                   "its baseline and GPU-hours (`dse table R1 R2` gives every trial of them).")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="as a JSON list")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("table", help="the trial table")
    p.add_argument("run_dir", type=Path, nargs="+")
    p.add_argument("--format", choices=["text", "csv", "json", "parquet"], default="text")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("best", help="the best trial; as a ready-to-run TOML with --toml")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--toml", action="store_true", help="print a ready-to-run test TOML of the best trial")
    p.add_argument("--json", action="store_true",
                   help="the best trial, the baseline, the speed-up and the GPU-hours as one JSON object")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("report", help="an HTML report with figures")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--json", action="store_true", help="where the report was written, as JSON")
    p.add_argument("--interactive", action="store_true",
                   help="add interactive plotly figures (offline, plotly.js embedded; the extra megatron-dse[report])")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("agents", help="registered agents and reward functions")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=_cmd_agents)

    p = sub.add_parser("completion", help="shell completion: eval \"$(dse completion bash)\"")
    p.add_argument("shell", choices=["bash"], help="the shell (bash; zsh reads it with bashcompinit)")
    p.add_argument("--json", action="store_true", help="the words completed, per command, as JSON")
    p.set_defaults(func=_cmd_completion)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("megatron-dse")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dse.spec import load_sweep

    return load_sweep(args.sweep, system=args.system, tests_dir=args.tests_dir, test_id=args.test_id)


# --------------------------------------------------------------------------------------------------
def _cmd_space(args: argparse.Namespace) -> int:
    from dse.space import SweepSpace, space_summary

    sweep = _load(args)
    space = SweepSpace(sweep)
    _check_agent_accepts_env(sweep, space)
    text, count = space_summary(space)
    if args.json:
        from dse.space import trials_to_run

        print(_json({"sweep": sweep.name, "source": str(sweep.source), "workload": sweep.workload,
                     "simulated": sweep.kind.simulated, "agent": sweep.test.agent,
                     "dimensions": {d.path: list(d.values) for d in space.agent.dimensions},
                     "env_params": {d.path: list(d.values) for d in space.env.dimensions},
                     "total": count.total, "valid": count.valid, "trials_to_run": trials_to_run(space, count),
                     "pruned_by_rule": {k: v for k, v in count.pruned.items() if v}}))
    else:
        print(text)
    space.require_valid(count)
    return EXIT_OK


def _json(data: object) -> str:
    import json

    return json.dumps(data, indent=1, default=str)


def _check_agent_accepts_env(sweep, space) -> None:  # type: ignore[no-untyped-def]
    """A sweep with env_params needs an agent that accepts a varying environment (refused up front)."""
    from dse.agents import get_agent_class

    cls = get_agent_class(sweep.test.agent)
    if space.env.dimensions and not cls.accepts_env_params:
        raise InputError(f"agent {sweep.test.agent} cannot handle env_params ({', '.join(space.env.names)}); "
                         "use random_search or optuna", file=str(sweep.source), field="agent")


def _cmd_install(args: argparse.Namespace) -> int:
    from dse.workloads import install_sweep

    with _progress_to_stderr(args.json):
        report = install_sweep(_load(args))
    if args.json:
        print(_json({"repos": {url: str(path) for url, path in report.repos.items()}, "launcher": report.launcher,
                     "image": report.image, "lines": report.lines}))
        return EXIT_OK
    for line in report.lines or ["nothing to install"]:
        print(line)
    return EXIT_OK


def _cmd_dry_run(args: argparse.Namespace) -> int:
    from dse.agents import create_sweep_agent
    from dse.engine import dry_run_text, plan_dry_run

    plan = plan_dry_run(_load(args), create_sweep_agent, n=args.n, out=args.out, agent=args.agent)
    print(_json(plan.as_dict()) if args.json else dry_run_text(plan))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from dse.api import run
    from dse.export import parse_log_to

    log_to = parse_log_to(args.log_to)  # a missing extra is refused before anything runs
    sweep = _load(args)
    if args.parallel < 1:
        raise InputError("must be >= 1", field="--parallel")
    if args.steps is not None and args.steps < 1:
        raise InputError("must be >= 1", field="--steps")
    with _progress_to_stderr(args.json):  # dse.run composes the options, the trackers and the run dir
        result = run(sweep, agent=args.agent, steps=args.steps, parallel=args.parallel, seed=args.seed,
                     out=args.out, cache=args.cache, no_cache=args.no_cache, executor=args.executor,
                     time_scale=args.time_scale, early_stopping=args.early_stopping, log_to=log_to,
                     wandb_project=args.wandb_project)
    code = result.exit_code
    assert code is not None  # a run's result has one; only a loaded run's has none
    return _run_json(result.run_dir, code) if args.json else code


def _cmd_resume(args: argparse.Namespace) -> int:
    from dse.agents import create_sweep_agent
    from dse.engine import resume_sweep
    from dse.export import make_loggers, parse_log_to, run_log_to

    log_to = parse_log_to([*run_log_to(args.run_dir), *(args.log_to or [])])
    loggers = make_loggers(log_to, wandb_project=args.wandb_project)
    with _progress_to_stderr(args.json):
        code = resume_sweep(args.run_dir, create_sweep_agent, parallel=args.parallel, observers=loggers,
                            log_to=log_to)
    return _run_json(args.run_dir, code) if args.json else code


def _progress_to_stderr(json_out: bool) -> contextlib.AbstractContextManager[object]:
    """With --json, stdout holds only the JSON: what a command prints while it works goes to stderr."""
    return contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext()


def _run_json(run_dir: Path, code: int) -> int:
    """`dse run/resume --json`: the run dir and exit code with `dse status --json` (the best, the GPU-hours)."""
    from dse.analysis import status_summary

    print(_json({"run_dir": str(run_dir), "exit_code": code, **status_summary(run_dir)}))
    return code


def _cmd_export(args: argparse.Namespace) -> int:
    from dse.export import export_run, export_text, make_loggers, parse_log_to

    names = parse_log_to(args.to, flag="--to")
    with _progress_to_stderr(args.json):
        sent = export_run(args.run_dir, make_loggers(names, wandb_project=args.wandb_project))
    print(_json(sent) if args.json else "\n".join(export_text(sent)))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from dse.analysis import status_summary, status_text

    print(_json(status_summary(args.run_dir)) if args.json else status_text(args.run_dir))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from dse.analysis import compare_runs
    from dse.metrics import format_number, units

    rows = compare_runs(args.run_dirs)
    if args.json:
        print(_json(rows))
        return EXIT_OK
    print(f"{'run':<44} {'agent':<14} {'trials':>6} {'best':>5} {'step time':>10} {'speed-up':>8} {'GPU-h':>8}")
    for r in rows:
        step = "-" if r["best_step_time"] is None else f"{format_number(r['best_step_time'])} s"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        print(f"{Path(r['run']).name[:44]:<44} {str(r['agent'])[:14]:<14} {r['trials']:>6} "
              f"{str(r['best_trial'] or '-'):>5} {step:>10} {speed:>8} {units.gpu_hours(r['gpu_hours'], unit=False):>8}")
    return EXIT_OK


def _cmd_table(args: argparse.Namespace) -> int:
    from dse.analysis import write_table

    text = write_table(args.run_dir, fmt="json" if args.json else args.format, output=args.output)
    if text is not None:
        print(text)
    return EXIT_OK


def _cmd_best(args: argparse.Namespace) -> int:
    import json

    from dse.analysis import best_record, best_summary, best_text, best_toml
    from dse.storage import TrialStore

    if args.json:
        print(json.dumps(best_summary(args.run_dir), indent=1, default=str))
    elif args.toml:
        store = TrialStore(args.run_dir / "trials.db", readonly=True)
        best = best_record(store.all())
        if best is None:
            raise InputError("no successful trial in this run", file=str(args.run_dir))
        print(best_toml(store.get_meta("sweep_data"), best))
    else:
        print(best_text(args.run_dir))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from dse.analysis import write_report

    path = write_report(args.run_dir, output=args.output, interactive=args.interactive)
    print(_json({"run_dir": str(args.run_dir), "report": str(path)}) if args.json else path)
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace) -> int:
    from dse.completion import bash_script

    if args.json:
        from dse.completion import completion_words

        print(_json(completion_words(build_parser())))
        return EXIT_OK
    print(bash_script(build_parser()), end="")
    return EXIT_OK


def _cmd_agents(args: argparse.Namespace) -> int:
    from dse.agents import agent_classes
    from dse.metrics import reward_names

    if args.json:
        print(_json({"agents": [{"name": name, "doc": (cls.__doc__ or "").strip().split("\n")[0],
                                 "accepts_env_params": cls.accepts_env_params} for name, cls in
                                sorted(agent_classes().items())], "reward_functions": reward_names()}))
        return EXIT_OK
    print("agents:")
    for name, cls in sorted(agent_classes().items()):
        env = "accepts env_params" if getattr(cls, "accepts_env_params", False) else "fixed environment only"
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:<16} {doc} [{env}]")
    print("reward functions:")
    for name in reward_names():
        print(f"  {name}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)  # unclosed files inside submitit are not the user's
        warnings.showwarning = _show_warning
        try:
            return func(args)
        except InputError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_BAD_INPUT
        except DseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURES
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith(("dse.", "agents.", "envs.")):
                raise
            print(f"error: dse {args.command}: the installation is incomplete ({exc.name} is missing); "
                  "reinstall with pip install -e .", file=sys.stderr)
            return EXIT_FAILURES
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            return EXIT_OK
        except (OSError, sqlite3.Error) as exc:  # a read-only or full disk, an unreachable scheduler
            print(f"error: dse {args.command}: {_environment_error(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Exception as exc:
            if type(exc).__name__ != "FailedJobError":  # submitit: sbatch refused or could not reach Slurm
                raise
            print(f"error: dse {args.command}: the scheduler refused the job: {' '.join(str(exc).split())[:300]}; "
                  "trials already stored are kept (dse resume RUN_DIR)", file=sys.stderr)
            return EXIT_BAD_INPUT


def _environment_error(exc: BaseException) -> str:
    """One line for an error of the machine, not of the sweep; what is stored stays (resume finishes it)."""
    from dse.errors import scrub_message

    where = getattr(exc, "filename", None)
    what = getattr(exc, "strerror", None) or " ".join(str(exc).split())
    return scrub_message(f"{what}{f': {where}' if where else ''} ({type(exc).__name__}); what was stored is kept "
                         "(finish with dse resume RUN_DIR once it is fixed)")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    from dse.spec import UnknownFieldWarning

    if issubclass(category, UnknownFieldWarning) or not issubclass(category, (DeprecationWarning, FutureWarning)):
        print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
