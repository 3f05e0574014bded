"""The project's own input error: one line naming the file, the field and what is wrong.

Every refusal of user input (a sweep, scenario or system TOML, a metrics file, an expression)
raises `InputError`; the CLI prints `str(err)` and exits 2, never a traceback.

A message never carries a secret: whatever it quotes from the input (a value, a name, a path) is scrubbed
of `hf_...` tokens, `NAME=secret` pieces and the resolved HF token's literal value when the error is built
and again when it is rendered.
"""

from __future__ import annotations

from dse.hashing import scrub_secrets, scrub_text


def scrub_message(text: str) -> str:
    """`text` without secrets (see `dse.hashing.scrub_secrets`); never fails, whatever the environment."""
    try:
        return scrub_secrets(text)
    except Exception:  # the HF token could not be resolved: scrub what the patterns know
        return scrub_text(text)


class DseError(Exception):
    """Base of every error dse raises on purpose."""

    def __str__(self) -> str:
        return scrub_message(super().__str__())


class InputError(DseError):
    """Bad user input. `str()` is `error: FILE: FIELD: message` (parts omitted when unknown)."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.message = scrub_message(" ".join(str(message).split()))  # always a single line
        self.file = scrub_message(str(file)) if file else file
        self.field = scrub_message(" ".join(str(field).split())) if field else field
        super().__init__(self.format())

    def format(self) -> str:
        parts = ["error"]
        if self.file:
            parts.append(str(self.file))
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return scrub_message(": ".join(parts))

    def with_file(self, file: str | None) -> InputError:
        """Return a copy that names `file` (keeps an existing file name)."""
        return InputError(self.message, file=self.file or file, field=self.field)

    def __str__(self) -> str:
        return self.format()


class FieldProblem(ValueError):
    """Raised inside a pydantic validator (the spec's, or a workload's `check_test`) to name the precise field
    path at fault; the spec turns it into an `InputError` naming that path (pydantic would name the model)."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        self.message = message
        super().__init__(message)
