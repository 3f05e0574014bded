"""The base of every workload's cmd_args model: unknown keys are kept (Hydra overrides) and warned about.

Lives below the workloads and Megatron layers so that each workload declares its own model
(`dse.megatron.MegatronBridgeCmdArgs`, `dse.workloads.CommandCmdArgs`) on a common base.
"""

from __future__ import annotations

import difflib
import warnings

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["CmdArgsModel", "UnknownFieldWarning"]


class UnknownFieldWarning(UserWarning):
    """An undotted cmd_args key that is not a known field (it is still forwarded as a Hydra override)."""


class CmdArgsModel(BaseModel):
    """Common behaviour: extra keys allowed (Hydra overrides), unknown undotted keys warned about."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    @model_validator(mode="after")
    def _warn_unknown_keys(self) -> CmdArgsModel:
        known = list(type(self).model_fields)
        for key, value in (self.model_extra or {}).items():
            if "." in key or isinstance(value, dict) or key in self._placeholder_keys():
                continue  # dotted keys and nested tables are Hydra overrides (`model.seq_length=...`)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            warnings.warn(
                f"cmd_args.{key}: unknown field, forwarded as a Hydra override '{key}=...'{hint}",
                UnknownFieldWarning,
                stacklevel=2,
            )
        return self

    def _placeholder_keys(self) -> set[str]:
        return set()

