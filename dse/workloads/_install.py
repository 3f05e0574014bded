"""Install what a sweep pins: each `[[git_repos]]` entry at its commit, the launcher's Python, the image.

Megatron-Bridge's launcher must run from the pinned checkout (the commit is part of every cache key, so
running anything else would be a lie). Checkouts live in a shared cache, `$DSE_HOME` (default
`~/.cache/dse`), keyed by url and commit, so two sweeps share one clone; installing is safe when two
sweeps do it at once (a file lock per entry, the clone made aside and renamed into place).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dse.errors import InputError

if TYPE_CHECKING:
    from dse.spec import GitRepo, Sweep

__all__ = ["InstallReport", "cached_image", "checkout_path", "dse_home", "install_repo", "install_sweep",
           "launcher_python", "launcher_venv_python"]

NEMO_RUN_REQUIREMENTS = ("nemo-run==0.7.0", "wandb", "numpy<2")  # v0.3.0's uv.lock; evaluate.py needs wandb
_DONE = ".dse-installed"


def dse_home() -> Path:
    return Path(os.environ.get("DSE_HOME") or Path.home() / ".cache" / "dse").expanduser()


@dataclass
class InstallReport:
    """What `dse install` did, line by line, and the paths a launch uses."""

    repos: dict[str, Path] = field(default_factory=dict)  # url -> checkout
    launcher: str | None = None
    image: str | None = None
    lines: list[str] = field(default_factory=list)


def _key(*parts: str, name: str | None = None) -> str:
    """A folder name: readable (`name`, else the last part) and unique (a digest of every part)."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", name or parts[-1])[:40].strip("-.") or "x"
    return f"{tail}-{digest}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(msg[-1] if msg else f"git {args[0]} failed ({proc.returncode})")
    return proc.stdout.strip()


def checkout_path(repo: GitRepo, home: Path | None = None) -> Path:
    """Where the pinned checkout of `repo` lives (or will, once installed)."""
    return (home or dse_home()) / "repos" / _key(repo.url, str(repo.init_submodules), repo.commit)


def launcher_venv_python(home: Path | None = None, requirements: tuple[str, ...] = NEMO_RUN_REQUIREMENTS) -> Path:
    """The launcher venv's python (made by `launcher_python`)."""
    return (home or dse_home()) / "venvs" / _key(*requirements, name=requirements[0]) / "bin" / "python"


def cached_image(image: str, home: Path | None = None) -> str:
    """The image to pass as -i: its cached .sqsh once `dse install` imported it, else as written."""
    sqsh = _sqsh_path(image, home or dse_home())
    return str(sqsh) if sqsh.is_file() else image


def _sqsh_path(image: str, home: Path) -> Path:
    return home / "images" / f"{_key(image)}.sqsh"


def install_repo(repo: GitRepo, home: Path | None = None) -> Path:
    """The checkout of `repo.url` at `repo.commit` in the shared cache, cloned on first use."""
    home = home or dse_home()
    target = checkout_path(repo, home)
    if (target / _DONE).is_file():
        return target
    if shutil.which("git") is None:
        raise InputError("git is not installed: cannot check out the pinned repository", field="git_repos")
    with _locked(home / "locks" / f"{target.name}.lock"):
        if (target / _DONE).is_file():
            return target  # another sweep finished it while we waited
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _git("clone", "--quiet", "--no-checkout", repo.url, str(tmp))
            _git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", repo.commit, cwd=tmp)
            if repo.init_submodules and (tmp / ".gitmodules").is_file():
                _git("submodule", "update", "--init", "--recursive", "--quiet", cwd=tmp)
            sha = _git("rev-parse", "HEAD", cwd=tmp)
        except RuntimeError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError(f"cannot check out {repo.url} at {repo.commit}: {exc}", field="git_repos") from None
        (tmp / _DONE).write_text(f"{repo.url}\n{repo.commit}\n{sha}\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def launcher_python(home: Path | None = None, requirements: tuple[str, ...] = NEMO_RUN_REQUIREMENTS) -> str:
    """A venv with nemo_run for setup_experiment.py (Megatron-Bridge's launcher imports it), made once."""
    home = home or dse_home()
    python = launcher_venv_python(home, requirements)
    venv = python.parent.parent
    if (venv / _DONE).is_file():
        return str(python)
    with _locked(home / "locks" / f"{venv.name}.lock"):
        if (venv / _DONE).is_file():
            return str(python)
        shutil.rmtree(venv, ignore_errors=True)
        for cmd in ([sys.executable, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "--quiet", *requirements]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
                raise InputError(f"cannot install the launcher environment ({' '.join(requirements)}): {tail[0]}; "
                                 "or name a Python with nemo_run as `launcher` in the system TOML", field="launcher")
        (venv / _DONE).write_text("\n".join(requirements) + "\n")
    return str(python)


def _image(image: str, home: Path) -> tuple[str, str]:
    """(what to pass as -i, a line for the report): a cached .sqsh when enroot can make one."""
    if not image.startswith("nvcr.io#") and "#" not in image:
        return image, f"image: {image} (used as given)"
    sqsh = _sqsh_path(image, home)
    if sqsh.is_file():
        return str(sqsh), f"image: {sqsh} (cached)"
    if shutil.which("enroot") is None:
        return image, f"image: {image} passed as a URL (enroot not found here: no .sqsh cached)"
    with _locked(home / "locks" / f"{sqsh.name}.lock"):
        if not sqsh.is_file():
            sqsh.parent.mkdir(parents=True, exist_ok=True)
            tmp = sqsh.with_suffix(f".{os.getpid()}.tmp")
            proc = subprocess.run(["enroot", "import", "-o", str(tmp), f"docker://{image}"], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
                raise InputError(f"enroot import of {image} failed: {tail[0]}", field="cmd_args.container_image")
            os.replace(tmp, sqsh)
    return str(sqsh), f"image: {sqsh} (imported with enroot)"


def install_sweep(sweep: Sweep, home: Path | None = None, *, launcher: bool = False) -> InstallReport:
    """Everything a sweep's launch needs, installed (idempotent): its pinned repos, and with `launcher` (a
    workload whose launcher submits its own job) the launcher's Python and the container image."""
    home = home or dse_home()
    report = InstallReport()
    system, test = sweep.system, sweep.test
    for repo in test.git_repos:
        if system.megatron_bridge_path and repo is test.megatron_bridge_repo:
            report.lines.append(f"repo: {repo.url} not cloned: megatron_bridge_path = {system.megatron_bridge_path}")
            continue
        path = install_repo(repo, home)
        report.repos[repo.url] = path
        sha = (path / _DONE).read_text().split()[-1]
        report.lines.append(f"repo: {repo.url} @ {repo.commit} ({sha[:12]}) -> {path}")
    if launcher:
        if system.launcher:
            report.launcher = system.launcher
            report.lines.append(f"launcher: {system.launcher} (from the system TOML)")
        else:
            report.launcher = launcher_python(home)
            report.lines.append(f"launcher: {report.launcher} ({', '.join(NEMO_RUN_REQUIREMENTS)})")
        image = str(test.cmd_args.get("container_image") or "")
        if image:
            report.image, line = _image(image, home)
            report.lines.append(line)
    return report
