"""Config hashing: canonical, stable across key order and container types, never touched by secrets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dse.hashing import SECRET_KEY_PATTERN, canonical_json, config_hash, is_secret_key, redact, scrub_text

PAYLOAD = {
    "workload": "MegatronBridge",
    "cmd_args": {
        "tp": 2,
        "pp": 1,
        "gb": 128,
        "tokenizer_model": "meta-llama/Llama-3.1-8B",
        "hf_token": "hf_x",
    },
    "num_nodes": 1,
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "container_image": "nvcr.io/nvidia/nemo:26.02",
    "extra_env_vars": {"NCCL_DEBUG": "WARN", "HF_TOKEN": "hf_secret", "TOKENIZERS_PARALLELISM": "false"},
}


@pytest.mark.parametrize(
    "key", ["hf_token", "HF_TOKEN", "wandb_key", "WANDB_API_KEY", "api_key", "apiKey", "db_password", "token"]
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "tokenizer_model",
        "tokenizer_type",
        "use_tokendrop",
        "calculate_per_token_loss",
        "max_tokens",
        "cache_key",
        "tp",
    ],
)
def test_result_changing_keys_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)
    assert key in canonical_json({key: 1})


def test_pattern_is_a_regex_over_snake_case_keys() -> None:
    assert SECRET_KEY_PATTERN.search("github_token")
    assert not SECRET_KEY_PATTERN.search("tokenizer")


def test_canonical_form() -> None:
    text = canonical_json({"b": (1, 2.0), "a": {"z": True, "y": None}, "c": -0.0, "p": Path("/x")})
    assert text == '{"a":{"y":null,"z":true},"b":[1,2.0],"c":0.0,"p":"/x"}'
    assert canonical_json({"x": 1.0}) != canonical_json({"x": 1})  # distinct but each stable
    assert canonical_json({"n": np.int64(3), "f": np.float32(0.5)}) == '{"f":0.5,"n":3}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [1, float("-inf")]])
def test_nan_and_inf_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


def test_secrets_are_dropped_not_redacted() -> None:
    text = canonical_json(PAYLOAD)
    assert "hf_token" not in text and "HF_TOKEN" not in text and "secret" not in text and "***" not in text
    assert "TOKENIZERS_PARALLELISM" in text and "tokenizer_model" in text
    changed = json.loads(json.dumps(PAYLOAD))
    changed["cmd_args"]["hf_token"] = "hf_other"
    del changed["extra_env_vars"]["HF_TOKEN"]
    assert config_hash(changed) == config_hash(PAYLOAD)
    changed["cmd_args"]["tp"] = 4
    assert config_hash(changed) != config_hash(PAYLOAD)


def test_hash_is_16_hex_and_pinned() -> None:
    h = config_hash({"a": 1})
    assert len(h) == 16 and int(h, 16) >= 0
    assert h == "015abd7f5cc57a2d"  # sha256('{"a":1}')[:16]; must never drift between releases


def test_secrets_inside_strings_are_scrubbed() -> None:
    command = "srun --export=ALL,HF_TOKEN=abc123 python run.py --hf_token hf_abcdefghijklmnopqrstuvwxyz -tp 2"
    scrubbed = scrub_text(command)
    assert "abc123" not in scrubbed and "hf_abcdefghijklmnopqrstuvwxyz" not in scrubbed
    assert "-tp 2" in scrubbed and "--export=ALL,HF_TOKEN=***" in scrubbed
    assert canonical_json({"cmd": command}) == canonical_json({"cmd": command.replace("abc123", "zzz")})


def test_redact_keeps_shape() -> None:
    out = redact({"a": [{"hf_token": "x"}], "t": ("wandb_key=k",), "n": {"password": {"deep": 1}}, "k": 1})
    assert out == {"a": [{"hf_token": "***"}], "t": ("wandb_key=***",), "n": {"password": "***"}, "k": 1}
    assert PAYLOAD["cmd_args"]["hf_token"] == "hf_x"  # input untouched


keys = st.sampled_from(["tp", "pp", "gb", "hf_token", "wandb_key", "api_key", "name", "seq", "HF_TOKEN", "x"])
leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
trees = st.recursive(
    leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(keys, c, max_size=4), max_leaves=15
)


def _shuffled(obj: object, rng: random.Random) -> object:
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(obj, list):
        return tuple(_shuffled(v, rng) for v in obj)  # tuples hash as lists
    return obj


def _with_secrets(obj: object, secret: str) -> object:
    if isinstance(obj, dict):
        out = {k: _with_secrets(v, secret) for k, v in obj.items()}
        out["hf_token"] = secret
        out["WANDB_API_KEY"] = {"nested": secret}
        return out
    if isinstance(obj, list):
        return [_with_secrets(v, secret) for v in obj]
    return obj


@given(st.dictionaries(keys, trees, max_size=5), st.randoms(use_true_random=False))
def test_key_order_and_tuples_do_not_matter(payload: dict[str, object], rng: random.Random) -> None:
    assert config_hash(_shuffled(payload, rng)) == config_hash(payload)  # type: ignore[arg-type]


@given(
    st.dictionaries(keys, trees, max_size=5),
    st.text(alphabet="abcdefXYZ0123456789", min_size=12, max_size=20),
)
def test_secrets_never_affect_the_hash_nor_appear(payload: dict[str, object], secret: str) -> None:
    secret = "S3cr3t" + secret
    with_secret = _with_secrets(payload, secret)
    assert secret not in canonical_json(with_secret)
    assert config_hash(with_secret) == config_hash(_with_secrets(payload, "other-value-entirely"))  # type: ignore[arg-type]
    assert secret not in json.dumps(redact(with_secret))
