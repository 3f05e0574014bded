"""Bad-input corpus: each malformed sweep, scenario or system file is refused by `dse space`,
`dse dry-run` and `dse run` with exit 2, one line naming the file and the field, no traceback, and
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

OK_HEAD = 'name = "b"\ntest_template_name = "MegatronBridgeSim"\n'
OK_ARGS = '[cmd_args]\ngpu_type = "h100"\nnum_gpus = 8\nmodel_recipe_name = "llama3_8b"\ntp = [1, 2]\n'
MB = ('name = "b"\ntest_template_name = "MegatronBridge"\n[[git_repos]]\n'
      'url = "https://github.com/NVIDIA-NeMo/Megatron-Bridge.git"\ncommit = "v0.3.0"\n' + OK_ARGS)

# (case id, sweep text, system text or None, expected field prefix)
CORPUS = [
    ("syntax", 'name = "b"\ntest_template_name = \n', None, "line 2"),
    ("unclosed-table", OK_HEAD + "[cmd_args\n", None, "line 3"),
    ("not-a-sweep", 'name = "b"\n', None, "test_template_name"),
    ("unknown-workload", 'name = "b"\ntest_template_name = "NeMo"\n', None, "test_template_name"),
    ("unknown-top-field", OK_HEAD + "agnet = 'optuna'\n" + OK_ARGS, None, "agnet"),
    ("wrong-type", OK_HEAD + OK_ARGS.replace("num_gpus = 8", 'num_gpus = "eight"'), None, "cmd_args.num_gpus"),
    ("negative-size", OK_HEAD + OK_ARGS.replace("tp = [1, 2]", "tp = [1, -2]"), None, "cmd_args.tp"),
    ("zero-steps", OK_HEAD + "agent_steps = 0\n" + OK_ARGS, None, "agent_steps"),
    ("unknown-agent", OK_HEAD + 'agent = "bayes"\n' + OK_ARGS, None, "agent"),
    ("unknown-reward", OK_HEAD + 'agent_reward_function = "speed"\n' + OK_ARGS, None, "agent_reward_function"),
    ("empty-space", OK_HEAD + OK_ARGS.replace("tp = [1, 2]", "tp = [3, 5]"), None, "cmd_args"),
    ("duplicate-values", OK_HEAD + OK_ARGS.replace("tp = [1, 2]", "tp = [1, 1]"), None, "cmd_args.tp"),
    ("env-scalar", OK_HEAD + OK_ARGS + "seq_length = 4096\n[env_params.seq_length]\n", None, "env_params.seq_length"),
    ("env-weights", OK_HEAD + OK_ARGS + "seq_length = [4096, 8192]\n[env_params.seq_length]\nweights = [0.2, 0.2]\n",
     None, "env_params.seq_length"),
    ("env-unknown", OK_HEAD + OK_ARGS + "[env_params.foo]\n", None, "env_params.foo"),
    ("env-with-grid", OK_HEAD + OK_ARGS + "seq_length = [4096, 8192]\n[env_params.seq_length]\n", None, "agent"),
    ("bad-constraint", OK_HEAD + 'constraints = ["tp ** "]\n' + OK_ARGS, None, "constraints[0]"),
    ("constraint-unknown-name", OK_HEAD + 'constraints = ["tpp > 1"]\n' + OK_ARGS, None, "constraints[0]"),
    ("mb-unpinned", MB.replace('commit = "v0.3.0"', 'commit = ""'), None, "git_repos[0].commit"),
    ("mb-no-repo", MB.replace("Megatron-Bridge.git", "Other.git"), None, "git_repos"),
    ("scenario-no-tests", 'name = "s"\nTests = []\n', None, "Tests"),
    ("scenario-bad-nodes", 'name = "s"\n[[Tests]]\nid = "a"\nnum_nodes = "two"\n', None, "Tests[0].num_nodes"),
    ("command-placeholder", 'name = "c"\ntest_template_name = "Command"\n[cmd_args]\ncommand = "echo {nope}"\n',
     None, "cmd_args.command"),
    ("system-unknown-field", OK_HEAD + OK_ARGS, 'scheduler = "slurm"\npartitoin = "x"\n', "partitoin"),
    ("system-bad-scheduler", OK_HEAD + OK_ARGS, 'scheduler = "pbs"\n', "scheduler"),
    ("system-syntax", OK_HEAD + OK_ARGS, 'scheduler = "slurm\n', "line 1"),
]


# The agent's own configuration: refused by the commands that build the agent (`dse space` does not).
OPTUNA = OK_HEAD + 'agent = "optuna"\nagent_metrics = ["step-time", "max-alloc-gb"]\n[agent_config]\n'
AGENT_CORPUS = [
    ("unknown-sampler", OPTUNA + 'sampler = "bohb"\n' + OK_ARGS, None, "agent_config.sampler"),
    ("unknown-agent-key", OPTUNA + "n_trials = 3\n" + OK_ARGS, None, "agent_config"),
    ("directions-not-list", OPTUNA + 'sampler = "nsga2"\ndirections = "min"\n' + OK_ARGS, None,
     "agent_config.directions"),
    ("directions-count", OPTUNA + 'sampler = "nsga2"\ndirections = ["minimize"]\n' + OK_ARGS, None,
     "agent_config.directions"),
    ("directions-word", OPTUNA + 'sampler = "nsga2"\ndirections = ["minimize", "up"]\n' + OK_ARGS, None,
     "agent_config.directions"),
    ("directions-not-nsga2", OPTUNA + 'directions = ["minimize", "minimize"]\n' + OK_ARGS, None,
     "agent_config.directions"),
]


@pytest.mark.parametrize("command", ["space", "dry-run", "run"])
@pytest.mark.parametrize("case, sweep_text, system_text, field", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_refused(tmp_path: Path, command: str, case: str, sweep_text: str, system_text: str | None,
                           field: str) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(sweep_text)
    args = [command, str(sweep)]
    bad_file = sweep
    if system_text is not None:
        system = tmp_path / "system.toml"
        system.write_text(system_text)
        args += ["--system", str(system)]
        bad_file = system
    if command != "space":
        args += ["--out", str(tmp_path / "out")]
    before = sorted(tmp_path.rglob("*"))
    r = subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                       env=os.environ.copy(), timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"error: {bad_file}: {field}"), lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("command", ["dry-run", "run"])
@pytest.mark.parametrize("case, sweep_text, system_text, field", AGENT_CORPUS, ids=[c[0] for c in AGENT_CORPUS])
def test_bad_agent_config_refused(tmp_path: Path, command: str, case: str, sweep_text: str,
                                  system_text: str | None, field: str) -> None:
    test_bad_input_refused(tmp_path, command, case, sweep_text, system_text, field)
