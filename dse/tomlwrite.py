"""The TOML files dse writes (sweep.toml, best.toml), through tomli-w: valid TOML for any text, an emoji
included, that `tomllib` reads back as the same data; and an atomic write for files readers poll."""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path, PurePath
from typing import Any

import tomli_w


def _text(s: str) -> str:
    """A string UTF-8 can hold (a lone surrogate, as from an undecodable file name, becomes an escape)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _plain(v: Any) -> Any:
    """What tomli-w can write: None left out of tables, tuples as lists, paths and other objects as text."""
    if isinstance(v, Mapping):
        return {_text(str(k)): _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, enum.Enum):
        return _plain(v.value)
    if isinstance(v, (bool, int, float, datetime, date, time)):
        return v
    if isinstance(v, str):
        return _text(v)
    if isinstance(v, PurePath):
        return _text(str(v))
    if hasattr(v, "item") and hasattr(v, "dtype"):  # numpy scalars
        return _plain(v.item())
    return _text(str(v))


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """TOML text of `data` (None values are left out), after `header` as `# ` comment lines."""
    lines = [f"# {_comment(ln)}".rstrip() for ln in header.splitlines()]
    body = tomli_w.dumps(_plain(data))
    return "\n".join(lines) + ("\n\n" if lines and body else "\n" if lines else "") + body


def _comment(line: str) -> str:
    """One comment line: no control character (TOML forbids them in comments) and valid UTF-8."""
    return _text("".join(c if c == "\t" or (ord(c) >= 32 and ord(c) != 127) else " " for c in line))


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically: a temp file in the same folder, then os.replace, so a reader
    sees the old file or the new one, never a partial one. Returns `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:  # the umask's permissions, as a plain write gives
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_toml_atomic(path: Path | str, data: Mapping[str, Any], header: str = "") -> Path:
    """`dumps(data, header)` written atomically to `path` (see `write_text_atomic`)."""
    return write_text_atomic(path, dumps(data, header))  # dumps fails before anything is written
