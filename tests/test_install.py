"""`dse install`: the pinned [[git_repos]] checkout in $DSE_HOME, shared, safe when two sweeps install at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_toml
from standin_repo import make_standin_repo


def _sweep(tmp_path: Path, url: str, commit: str) -> Path:
    return write_toml(tmp_path / "mb.toml", f"""
name = "mb"
test_template_name = "MegatronBridge"
[[git_repos]]
url = "{url}"
commit = "{commit}"
mount_as = "/opt/Megatron-Bridge"
[cmd_args]
model_family_name = "llama"
model_recipe_name = "llama3_8b"
num_gpus = 8
mb = [1, 2]
""")


def _system(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "system.toml", f'launcher = "{sys.executable}"\n')


def _dse(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DSE_HOME": str(tmp_path / "home")}
    return subprocess.Popen([sys.executable, "-m", "dse.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_install_checks_out_the_pinned_tag_once_even_when_two_sweeps_race(tmp_path: Path) -> None:
    url, tag = make_standin_repo(tmp_path / "src")
    args = ["install", str(_sweep(tmp_path, url, tag)), "--system", str(_system(tmp_path))]
    procs = [_dse(tmp_path, *args) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    (checkout,) = list((tmp_path / "home" / "repos").iterdir())  # one checkout, no debris beside it
    assert all(str(checkout) in out for out, _ in results)
    head = subprocess.run(["git", "-C", str(checkout), "describe", "--tags", "--exact-match"], capture_output=True,
                          text=True).stdout.strip()
    assert head == tag  # the pinned tag, not the newer commit after it
    assert "WRONG VERSION" not in (checkout / "scripts" / "performance" / "setup_experiment.py").read_text()
    # the dry-run command runs the launcher from that checkout and mounts it
    dry = _dse(tmp_path, "dry-run", *args[1:], "-n", "1", "--out", str(tmp_path / "dry"))
    out, err = dry.communicate(timeout=120)
    assert dry.returncode == 0, err
    assert f"{checkout}/scripts/performance/setup_experiment.py" in out and f"{checkout}:/opt/Megatron-Bridge" in out


def test_a_commit_that_does_not_exist_is_one_line_exit_2(tmp_path: Path) -> None:
    url, _ = make_standin_repo(tmp_path / "src")
    p = _dse(tmp_path, "install", str(_sweep(tmp_path, url, "v9.9.9-nope")), "--system", str(_system(tmp_path)))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "git_repos" in lines[0] and "v9.9.9-nope" in lines[0], err
    repos = tmp_path / "home" / "repos"
    assert not repos.exists() or not any(repos.iterdir())  # no half-made checkout left behind


def test_an_image_url_is_passed_as_is_when_enroot_is_missing(tmp_path: Path) -> None:
    """This machine has no enroot: `dse install` says the URL is passed, and the launch uses the URL."""
    import shutil

    assert shutil.which("enroot") is None
    url, tag = make_standin_repo(tmp_path / "src")
    sweep = _sweep(tmp_path, url, tag)
    sweep.write_text(sweep.read_text().replace("[cmd_args]\n", '[cmd_args]\ncontainer_image = "nvcr.io#nvidia/nemo:26.02.00"\n'))
    p = _dse(tmp_path, "install", str(sweep), "--system", str(_system(tmp_path)))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "image: nvcr.io#nvidia/nemo:26.02.00 passed as a URL (enroot not found" in out


def test_the_launcher_venv_is_made_once_from_pinned_requirements(tmp_path: Path) -> None:
    """The path `dse install` takes when the system names no launcher (here with a small requirement instead
    of nemo-run's 111 packages): a venv in $DSE_HOME, reused, with the requirement importable."""
    from dse.workloads import launcher_python

    python = launcher_python(tmp_path / "home", requirements=("packaging>=24",))
    assert python.startswith(str(tmp_path / "home" / "venvs"))
    r = subprocess.run([python, "-c", "import packaging, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(tmp_path / "home")), r.stderr
    assert launcher_python(tmp_path / "home", requirements=("packaging>=24",)) == python  # made once
