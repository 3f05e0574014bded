"""The project's own input error: one line naming the file, the field and what is wrong.

Every refusal of user input (a sweep, scenario or system TOML, a metrics file, an expression)
raises `InputError`; the CLI prints `str(err)` and exits 2, never a traceback.
"""

from __future__ import annotations


class DseError(Exception):
    """Base of every error dse raises on purpose."""


class InputError(DseError):
    """Bad user input. `str()` is `error: FILE: FIELD: message` (parts omitted when unknown)."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.message = " ".join(str(message).split())  # always a single line
        self.file = file
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        parts = ["error"]
        if self.file:
            parts.append(str(self.file))
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def with_file(self, file: str | None) -> InputError:
        """Return a copy that names `file` (keeps an existing file name)."""
        return InputError(self.message, file=self.file or file, field=self.field)

    def __str__(self) -> str:
        return self.format()
