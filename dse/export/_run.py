"""Choosing the trackers (`--log-to`), checking their extra is installed before anything runs, and sending an
already finished run (`dse export`) through the same loggers a live run uses."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dse.errors import DseError, InputError, scrub_message
from dse.export._base import TrialLogger
from dse.export._mlflow import MlflowLogger
from dse.export._wandb import WandbLogger
from dse.storage import TrialStore

# tracker -> (module its extra installs, the extra)
TRACKERS: dict[str, tuple[str, str]] = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


class ExportError(DseError):
    """A tracker refused what `dse export` sent (the run dir is unchanged but for the ledger of what was sent)."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules (None) has no spec
        return False


def parse_log_to(values: Iterable[str] | None, flag: str = "--log-to") -> list[str]:
    """`["wandb", "mlflow"]` from `--log-to wandb --log-to mlflow` or `--log-to wandb,mlflow` (in order, once
    each); an unknown tracker, or one whose extra is not installed, is one line (exit 2) before any trial."""
    names: list[str] = []
    for value in values or []:
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in TRACKERS:
                raise InputError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}", field=flag)
            if name not in names:
                names.append(name)
    for name in names:
        module, extra = TRACKERS[name]
        if not _installed(module):
            raise InputError(f"needs the {extra} extra: pip install 'megatron-dse[{extra}]'", field=f"{flag} {name}")
    return names


def make_loggers(names: Iterable[str], *, wandb_project: str | None = None) -> list[TrialLogger]:
    """One logger per tracker name (see `parse_log_to`)."""
    loggers: list[TrialLogger] = []
    for name in names:
        loggers.append(WandbLogger(project=wandb_project) if name == "wandb" else MlflowLogger())
    return loggers


def run_log_to(run_dir: Path) -> list[str]:
    """The trackers a run was started with (its metadata's `log_to`), so `dse resume` continues them; [] when
    `run_dir` is no run (resume then says so)."""
    path = Path(run_dir) / "trials.db"
    if not path.is_file():
        return []
    with TrialStore(path, readonly=True) as store:
        return [str(n) for n in (store.get_meta("options", {}) or {}).get("log_to") or []]


def export_run(run_dir: Path, loggers: Iterable[TrialLogger]) -> list[dict[str, Any]]:
    """Send every finished trial of a run to each logger (those sent before are skipped); what each sent:
    `{"tracker", "sent", "sent_before"}` (`dse export --json`; `export_text` words it)."""
    run_dir = Path(run_dir)
    if not (run_dir / "trials.db").is_file():
        raise InputError("not a dse run directory (needs trials.db)", file=str(run_dir))
    with TrialStore(run_dir / "trials.db", readonly=True) as store:
        records = [r for r in store.all() if r.status.is_finished]
    lines = []
    for logger in loggers:
        try:
            logger.start(run_dir)
            try:
                for rec in records:
                    logger.on_trial(rec)
            finally:
                logger.close()
        except (DseError, OSError):
            raise
        except Exception as exc:
            raise ExportError(scrub_message(f"{logger.name}: {type(exc).__name__}: {exc}")) from exc
        lines.append({"tracker": logger.name, "sent": logger.sent, "sent_before": len(records) - logger.sent})
    return lines


def export_text(sent: Iterable[dict[str, Any]]) -> list[str]:
    """`mlflow: sent 3 trials (0 were sent before)`, one line per tracker."""
    return [f"{s['tracker']}: sent {s['sent']} trials ({s['sent_before']} were sent before)" for s in sent]
