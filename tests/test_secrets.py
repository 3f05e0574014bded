"""The HF token, given by environment or by file, never lands in any file under the run directory, the
cache, the logs or printed commands; the MegatronBridge job still receives it (stand-in launcher)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_toml

from dse.analysis._table import load_trials

TOKEN = "hf_SECRETsecretSECRET0123456789abcdef"


def _sweep(tmp_path: Path, inline_token: bool = False) -> Path:
    extra = f'hf_token = "{TOKEN}"\n' if inline_token else ""
    return write_toml(tmp_path / "mb.toml", f"""
name = "mb_secret"
test_template_name = "MegatronBridge"
[[git_repos]]
url = "https://github.com/NVIDIA-NeMo/Megatron-Bridge.git"
commit = "v0.3.0"
mount_as = "/opt/Megatron-Bridge"
[cmd_args]
gpu_type = "h100"
gpus_per_node = 8
num_gpus = 8
container_image = "nvcr.io#nvidia/nemo:26.02.00"
model_family_name = "llama"
model_recipe_name = "llama3_8b"
compute_dtype = "bf16"
tp = 1
vp = 1
mb = [1, 2]
gb = 128
{extra}""")


def _system(tmp_path: Path, scheduler: str = "local") -> Path:
    launcher = f"{sys.executable} {REPO / 'tests' / 'standin_launcher.py'}"
    # megatron_bridge_path: no clone of the pinned repo (the stand-in ignores the script path it is given)
    return write_toml(tmp_path / "system.toml", f'scheduler = "{scheduler}"\ndefault_partition = "debug"\n'
                      f'gpus_per_node = 8\ncontainer_runtime = "none"\nlauncher = "{launcher}"\n'
                      f'megatron_bridge_path = "{tmp_path / "mb"}"\npoll_interval_s = 0.5\n')


def _grep_all(root: Path) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and TOKEN.encode() in p.read_bytes():
            hits.append(p)
    return hits


@pytest.mark.parametrize("how", ["env", "file", "inline"])
def test_token_reaches_job_but_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_TOKEN_PATH")}
    if how == "env":
        env["HF_TOKEN"] = TOKEN
    elif how == "file":
        token_file = tmp_path / "secret" / "token"
        token_file.parent.mkdir()
        token_file.write_text(TOKEN + "\n")
        env["HF_TOKEN_PATH"] = str(token_file)
    cache = tmp_path / "cache" / "cache.db"
    out = tmp_path / "runs"
    args = ["run", str(_sweep(tmp_path, inline_token=how == "inline")), "--system", str(_system(tmp_path)),
            "--out", str(out), "--cache", str(cache), "--parallel", "2"]
    r = subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    dry = subprocess.run([sys.executable, "-m", "dse.cli", "dry-run", *args[1:4], "--out", str(tmp_path / "dry")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    (run,) = list(out.iterdir())
    df = load_trials(run)
    assert set(df["status"]) == {"completed"}  # the job saw HF_TOKEN (the stand-in exits 3 without it)
    assert df.set_index("param.mb")["metric.default"].to_dict() == pytest.approx({1: 2.1, 2: 1.1})
    for text in (r.stdout, r.stderr, dry.stdout, dry.stderr):
        assert TOKEN not in text
    assert _grep_all(run) == [] and _grep_all(cache.parent) == [] and _grep_all(tmp_path / "dry") == []
    assert "-vp None" in (run / "trials" / "1" / "command.sh").read_text()
