"""The sweep spec: a CloudAI-style test, scenario and system TOML -> one validated `Sweep`.

A sweep is one test definition (a test TOML, a scenario naming a test by `test_name`, or a test written
inline in a scenario). Any list-valued `cmd_args` field is a search dimension (see `dse.space`). Everything
a user can get wrong is refused with one `InputError` line naming the file and the field, so the rest of the
engine only sees valid specs.
"""

from dse.cmd_args import UnknownFieldWarning
from dse.spec._load import MAX_TOML_DEPTH, Sweep, load_sweep, load_system, read_toml
from dse.spec._system import Scenario, ScenarioTest, SystemConfig
from dse.spec._test import MAX_NAME_LENGTH, EnvParamSpec, GitRepo, TestDefinition, check_sweep_name

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TOML_DEPTH",
    "EnvParamSpec",
    "GitRepo",
    "Scenario",
    "ScenarioTest",
    "Sweep",
    "SystemConfig",
    "TestDefinition",
    "UnknownFieldWarning",
    "check_sweep_name",
    "load_sweep",
    "load_system",
    "read_toml",
]
