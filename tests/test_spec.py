"""Spec models and TOML loading: the seed examples load unchanged; every validator passes and fails."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import MB_REPO, REPO, write_toml

from dse.errors import InputError
from dse.megatron import MegatronBridgeCmdArgs
from dse.spec import UnknownFieldWarning, load_sweep, load_system
from dse.timelimit import parse_time_limit

SEED = REPO / "sweeps" / "seed"

MB_HEAD = """
name = "t"
test_template_name = "MegatronBridge"
[[git_repos]]
url = "https://github.com/NVIDIA-NeMo/Megatron-Bridge.git"
commit = "v0.3.0"
[cmd_args]
gpu_type = "h100"
num_gpus = 8
model_family_name = "llama"
model_recipe_name = "llama3_8b"
"""


def _err(tmp_path: Path, text: str, **kw) -> InputError:  # type: ignore[no-untyped-def]
    p = write_toml(tmp_path / "s.toml", text)
    with pytest.raises(InputError) as info:
        load_sweep(p, **kw)
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith(f"error: {p}")
    return err


def test_seed_test_toml_loads() -> None:
    s = load_sweep(SEED / "tests" / "megatron_bridge_qwen_30b.toml")
    assert s.workload == "MegatronBridge"
    assert s.test.cmd_args["compute_dtype"] == "fp8_mx"
    assert s.test.megatron_bridge_repo is not None and s.test.megatron_bridge_repo.commit == "v0.3.0"


def test_seed_scenario_by_test_name_loads() -> None:
    s = load_sweep(SEED / "megatron_bridge_qwen_30b_scenario.toml", tests_dir=SEED / "tests")
    assert s.test.num_nodes == 2  # the seed writes num_nodes = "2"
    assert s.name == "megatron_bridge_qwen_30b" and s.test_id == "megatron_bridge_qwen_30b"


def test_seed_test_in_scenario_loads() -> None:
    s = load_sweep(SEED / "megatron_bridge_test_in_scenario.toml")
    assert s.test.time_limit == "00:30:00" and s.test.num_nodes == 2
    assert s.test.cmd_args["container_image"] == "nvcr.io#nvidia/nemo:26.02.01"


def test_cmd_args_model_has_every_seed_field() -> None:
    fields = MegatronBridgeCmdArgs.model_fields
    for name in ("gpu_type", "use_tokendrop", "cuda_graph_scope", "et", "profiling_ranks", "nsys_extra_args",
                 "recompute_modules", "num_distributed_optimizer_instances", "list_config_variants"):
        assert name in fields
    assert fields["max_steps"].default == 10 and fields["save_config_filepath"].default.endswith(".yaml")


def test_scenario_without_tests_dir_is_refused() -> None:
    with pytest.raises(InputError, match="--tests-dir"):
        load_sweep(SEED / "megatron_bridge_qwen_30b_scenario.toml")


def test_scenario_unknown_test_name(tmp_path: Path) -> None:
    err = _err(tmp_path, 'name="x"\n[[Tests]]\nid="a"\ntest_name="nope"\n', tests_dir=SEED / "tests")
    assert err.field == "Tests.test_name" and "no test named 'nope'" in err.message


def test_scenario_overrides_merge(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", 'name="x"\n[[Tests]]\nid="a"\ntest_name="megatron_bridge_qwen_30b"\n'
                   'num_nodes=[1,2]\nagent="random_search"\n[Tests.cmd_args]\ntp=[1,2]\n')
    s = load_sweep(p, tests_dir=SEED / "tests")
    assert s.test.agent == "random_search" and s.test.cmd_args["tp"] == [1, 2]
    assert s.test.cmd_args["model_recipe_name"] == "qwen3_30b_a3b" and s.test.num_nodes == [1, 2]


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    err = _err(tmp_path, 'name = "x"\ntest_template_name = \n')
    assert err.field == "line 2"


def test_unknown_top_level_field_suggests(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\nagent_step = 3'))
    assert err.field == "agent_step" and "agent_steps" in err.message


def test_unknown_cmd_args_key_warns_with_suggestion(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", MB_HEAD + "tpp = 2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_sweep(p)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UnknownFieldWarning)]
    assert len(msgs) == 1 and "cmd_args.tpp" in msgs[0] and "'tp'" in msgs[0]


def test_dotted_hydra_keys_do_not_warn(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", MB_HEAD + '"model.seq_length" = 4096\nlogger.log_throughput = true\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_sweep(p)
    assert not [w for w in caught if issubclass(w.category, UnknownFieldWarning)]


def test_wrong_type_names_field(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD + 'tp = "four"\n')
    assert err.field is not None and err.field.startswith("cmd_args.tp")


@pytest.mark.parametrize("line, field", [
    ("tp = 0", "cmd_args.tp"), ("mb = [1, -2]", "cmd_args.mb"), ("tp = []", "cmd_args.tp"),
])
def test_sizes_must_be_positive(tmp_path: Path, line: str, field: str) -> None:
    err = _err(tmp_path, MB_HEAD + line + "\n")
    assert err.field is not None and err.field.startswith(field)


def test_num_gpus_positive(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace("num_gpus = 8", "num_gpus = 0"))
    assert err.field == "cmd_args.num_gpus"


def test_agent_steps_positive(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\nagent_steps = 0'))
    assert err.field == "agent_steps"


def test_megatron_bridge_repo_must_be_pinned(tmp_path: Path) -> None:
    text = MB_HEAD.replace("url = \"https://github.com/NVIDIA-NeMo/Megatron-Bridge.git\"",
                           "url = \"https://github.com/NVIDIA-NeMo/Run.git\"")
    err = _err(tmp_path, text)
    assert err.field == "git_repos" and "Megatron-Bridge" in err.message
    err = _err(tmp_path, MB_HEAD.replace('commit = "v0.3.0"', 'commit = " "'))
    assert err.field == "git_repos[0].commit"


def test_simulator_needs_no_repo_or_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    text = MB_HEAD.replace("MegatronBridge", "MegatronBridgeSim")
    s = load_sweep(write_toml(tmp_path / "s.toml", text))
    assert s.workload == "MegatronBridgeSim"


def test_hf_token_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    err = _err(tmp_path, MB_HEAD)
    assert err.field == "cmd_args.hf_token" and "HF_TOKEN" in err.message
    load_sweep(write_toml(tmp_path / "ok.toml", MB_HEAD + 'hf_token = "hf_x"\n'))
    tok = tmp_path / "token"
    tok.write_text("hf_from_file\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tok))
    load_sweep(write_toml(tmp_path / "ok2.toml", MB_HEAD))


ENV_CASES = [
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\n", None),
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\nweights = [0.25, 0.75]\n", None),
    ("[env_params.nope]\n", "names no cmd_args field"),
    ("seq_length = 4096\n[env_params.seq_length]\n", "is a scalar"),
    ("seq_length = [4096]\n[env_params.seq_length]\n", "at least 2"),
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\nweights = [1.0]\n", "1 weights for 2"),
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\nweights = [1.5, -0.5]\n", "non-negative"),
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\nweights = [0.7, 0.7]\n", "sum to 1"),
    ("seq_length = [4096, 8192]\n[env_params.seq_length]\nwieghts = [0.5, 0.5]\n", "unknown field"),
]


@pytest.mark.parametrize("tail, problem", ENV_CASES)
def test_env_params_validation(tmp_path: Path, tail: str, problem: str | None) -> None:
    # env_params tables must follow cmd_args keys; put them after the cmd_args table
    head, _, rest = tail.partition("[env_params")
    text = MB_HEAD + head + ("[env_params" + rest if rest else "")
    if problem is None:
        s = load_sweep(write_toml(tmp_path / "s.toml", text))
        assert "seq_length" in s.test.env_params
    else:
        err = _err(tmp_path, text)
        assert err.field is not None and err.field.startswith("env_params")
        assert problem in err.message


def test_unknown_agent_lists_known(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\nagent = "bayes"'))
    assert err.field == "agent" and "grid_search" in err.message and "optuna" in err.message


def test_unknown_reward_lists_known(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\nagent_reward_function = "fastest"'))
    assert err.field == "agent_reward_function" and "inverse" in err.message


def test_bad_constraint_expression(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\nconstraints = ["__import__(\'os\')"]'))
    assert err.field == "constraints[0]"


def test_excluded_args_paths(tmp_path: Path) -> None:
    err = _err(tmp_path, MB_HEAD.replace('name = "t"', 'name = "t"\ndse_excluded_args = ["cmd_args."]'))
    assert err.field is not None and err.field.startswith("dse_excluded_args")


def test_scenario_with_two_tests_needs_test_id(tmp_path: Path) -> None:
    text = ('name = "x"\n[[Tests]]\nid = "a"\ntest_name = "megatron_bridge_qwen_30b"\n'
            '[[Tests]]\nid = "b"\ntest_name = "megatron_bridge_qwen_30b"\n')
    err = _err(tmp_path, text, tests_dir=SEED / "tests")
    assert err.field == "Tests" and "--test" in err.message
    s = load_sweep(tmp_path / "s.toml", tests_dir=SEED / "tests", test_id="b")
    assert s.test_id == "b"


def test_system_toml(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "sys.toml", 'scheduler = "slurm"\ndefault_partition = "batch"\ngpus_per_node = 4\n'
                   'time_limit = "01:00:00"\n')
    sys_cfg = load_system(p)
    assert sys_cfg.scheduler == "slurm" and sys_cfg.partition == "batch" and sys_cfg.gpus_per_node == 4
    bad = write_toml(tmp_path / "bad.toml", 'scheduler = "pbs"\n')
    with pytest.raises(InputError) as info:
        load_system(bad)
    assert info.value.field == "scheduler"
    bad2 = write_toml(tmp_path / "bad2.toml", 'time_limit = "soon"\n')
    with pytest.raises(InputError) as info:
        load_system(bad2)
    assert info.value.field == "time_limit"


def test_time_limit_parsing() -> None:
    assert parse_time_limit("00:30:00") == 30 and parse_time_limit("1-00:00:00") == 1440
    assert parse_time_limit("90") == 90 and parse_time_limit("00:00:30") == 1
    with pytest.raises(ValueError):
        parse_time_limit("00:xx")


def test_not_a_sweep(tmp_path: Path) -> None:
    err = _err(tmp_path, 'name = "x"\n')
    assert err.field == "test_template_name"


def test_missing_file() -> None:
    with pytest.raises(InputError, match="file not found"):
        load_sweep("/nonexistent/x.toml")


def test_mb_repo_constant_matches() -> None:
    assert "Megatron-Bridge" in MB_REPO["url"]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TOML_PIECES = st.sampled_from([
    'name = "x"\n', 'test_template_name = "MegatronBridgeSim"\n', 'test_template_name = "Command"\n',
    "[cmd_args]\n", "tp = [1, 2]\n", 'tp = "a"\n', "num_gpus = 0\n", "[env_params.tp]\n", "weights = [1]\n",
    "[[Tests]]\n", 'id = "a"\n', "num_nodes = [1, 2]\n", 'command = "echo {x}"\n', "x = [1, 2]\n",
    'agent = "optuna"\n', 'constraints = ["tp >"]\n', "[[git_repos]]\n", "= 3\n", "[cmd_args.model]\n",
    "seq_length = [4096]\n", 'dse_excluded_args = "cmd_args.tp"\n', "agent_steps = -1\n",
])


@given(st.one_of(st.text(max_size=200), st.lists(_TOML_PIECES, max_size=12).map("".join)))
@settings(max_examples=200, deadline=None)
def test_fuzz_loader_raises_only_input_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    p = tmp_path_factory.mktemp("fuzz") / "f.toml"
    p.write_text(text, errors="surrogateescape") if "\x00" not in text else p.write_bytes(text.encode("utf-8", "replace"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sweep = load_sweep(p)
        except InputError:
            return
    import contextlib

    from dse.space import SweepSpace

    with contextlib.suppress(InputError):
        SweepSpace(sweep).count()
