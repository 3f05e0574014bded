"""Canonical, secret-free JSON of a trial's configuration and its hash (the result-cache key).

Two configs that would give the same result must hash the same whatever their key order or container
types, and a secret (HF token, W&B key) must neither reach the hash input nor change the hash: secrets
are dropped, not redacted, so rotating a token keeps the cache valid.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

HASH_LENGTH = 16
REDACTED = "***"
# A literal secret shorter than this is not replaced inside text (a 1-character "token" would mangle every
# message); real tokens are far longer, and `hf_...` tokens are caught by their pattern at any length >= 20.
MIN_SECRET_LENGTH = 8

# Applied to a key in snake case (see `is_secret_key`). `*token` must not catch `tokenizer_model`,
# `use_tokendrop`, `calculate_per_token_loss` or `max_tokens`, which change the result.
SECRET_KEY_PATTERN: re.Pattern[str] = re.compile(
    r"""
    (?:^|[_.\-\s])(?:token|secret|secrets|password|passwd|apikey|credentials?|authorization)$
    | (?:^|[_.\-\s])(?:secret|password|passwd)(?:[_.\-\s]|$)
    | (?:^|[_.\-\s])(?:api|wandb|secret|private|access|auth|hf|ssh)[_.\-\s]?key$
    | ^(?:hf|wandb|github|gh|access|auth|api|bearer|refresh)[_.\-\s]?token[_.\-\s]?\w*$
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Secret-looking pieces inside string values: Hugging Face tokens and `NAME=value` / `--name value`. A token
# is found wherever it starts that no letter or digit precedes (`run_hf_...`, `x=hf_...`, `/hf_...`).
_HF_TOKEN_VALUE = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}")
_ASSIGNMENT = re.compile(r"(?<![\w.])(?P<key>[A-Za-z_][\w.\-]*)=(?=(?P<val>[^\s,;'\"&]+))")
_FLAG_VALUE = re.compile(
    r"(?<![\w\-])(?P<dash>--?)(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>\s+)(?!-)(?P<val>[^\s,;'\"]+)"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (`hf_token`, `HF_TOKEN`, `wandbKey`, `api_key`, ...)."""
    if not isinstance(key, str):
        return False
    return SECRET_KEY_PATTERN.search(_CAMEL.sub("_", key.strip())) is not None


def scrub_text(text: str) -> str:
    """A string with embedded secrets (`HF_TOKEN=...`, `--hf_token ...`, `hf_...` tokens) replaced."""
    text = _HF_TOKEN_VALUE.sub(REDACTED, text)
    # `--export=HF_TOKEN=x` nests assignments, so values are found with a lookahead and cut afterwards.
    spans = [
        (m.end(), m.end() + len(m.group("val")))
        for m in _ASSIGNMENT.finditer(text)
        if is_secret_key(m.group("key"))
    ]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in reversed(merged):
        text = text[:start] + REDACTED + text[end:]
    return _FLAG_VALUE.sub(
        lambda m: (
            f"{m.group('dash')}{m.group('key')}{m.group('sep')}{REDACTED}"
            if is_secret_key(m.group("key"))
            else m.group(0)
        ),
        text,
    )


def resolve_hf_token(cmd_args: Mapping[str, Any] | None = None) -> str:
    """The HF token from cmd_args.hf_token, HF_TOKEN, or the file named by HF_TOKEN_PATH (in that order)."""
    token = str((cmd_args or {}).get("hf_token") or "").strip()
    if token:
        return token
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("HF_TOKEN_PATH", "").strip()
    if path:
        try:
            return Path(path).expanduser().read_text().strip()
        except OSError:
            return ""
    return ""


def known_secrets() -> tuple[str, ...]:
    """Literal secret values this process knows: the resolved HF token (`HF_TOKEN`, or the file named by
    `HF_TOKEN_PATH`), which need not look like `hf_...`."""
    token = resolve_hf_token()
    return (token,) if len(token) >= MIN_SECRET_LENGTH else ()


def scrub_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """`scrub_text`, and every literal occurrence of a known secret (default: `known_secrets()`) replaced."""
    text = scrub_text(text)
    for secret in known_secrets() if secrets is None else secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return text


def is_secret_env(name: str, value: str, secrets: Iterable[str] | None = None) -> bool:
    """Whether an environment variable holds a secret: a secret name (`MY_TOKEN`, `WANDB_API_KEY`), or a value
    with a secret in it (an `hf_...` token, `--token=...`, the resolved HF token)."""
    return is_secret_key(name) or scrub_secrets(str(value), secrets) != str(value)


def redact(obj: Any, secrets: Iterable[str] | None = None) -> Any:
    """Deep copy with secret-keyed values replaced by `"***"` and secrets inside strings (`scrub_secrets`)
    replaced (for files, logs and tables)."""
    return _redact(obj, tuple(known_secrets() if secrets is None else secrets))


def _redact(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, Mapping):
        return {k: (REDACTED if is_secret_key(k) else _redact(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v, secrets) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(v, secrets) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_redact(v, secrets) for v in obj)
    if isinstance(obj, str):
        return scrub_secrets(obj, secrets)
    if isinstance(obj, (int, float, bool)) or obj is None:
        return obj
    return copy.deepcopy(obj)


def _plain(obj: Any, path: str) -> Any:
    """JSON-ready form: secrets dropped, containers normalised, NaN/inf refused."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, enum.Enum):
        return _plain(obj.value, path)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{path or 'value'}: {obj!r} cannot be hashed")
        return 0.0 if obj == 0 else float(obj)  # -0.0 and 0.0 are one config
    if isinstance(obj, str):
        return scrub_text(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if is_secret_key(key):
                continue
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"{path or 'value'}: key of type {type(key).__name__} cannot be hashed")
            name = key if isinstance(key, str) else json.dumps(key)
            if name in out:
                raise ValueError(f"{path or 'value'}: key {name!r} appears twice once converted to text")
            out[name] = _plain(value, f"{path}.{name}" if path else name)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_plain(v, f"{path}{{}}") for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")))
    if hasattr(obj, "model_dump"):  # pydantic models
        return _plain(obj.model_dump(mode="python"), path)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), path)
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _plain(obj.tolist(), path)
    raise TypeError(f"{path or 'value'}: type {type(obj).__name__} cannot be hashed")


def canonical_json(obj: Any) -> str:
    """Sorted keys, compact separators, secrets dropped, tuples as lists; NaN/inf -> ValueError."""
    return json.dumps(
        _plain(obj, ""), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def config_hash(payload: Mapping[str, Any]) -> str:
    """First 16 hex characters of the sha256 of `canonical_json(payload)`."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"config_hash needs a mapping, got {type(payload).__name__}")
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()[:HASH_LENGTH]
