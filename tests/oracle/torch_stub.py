"""A stand-in `torch` for running Megatron-Core's pure-Python config checks without PyTorch.

`install()` puts a `sys.meta_path` finder first that answers every `torch` / `torch.*` import with a
stub module. On a stub module, lowercase attributes are `MagicMock`s (functions, dtypes, flags) and
capitalised ones are real, subclassable classes whose metaclass derives from `ABCMeta` (Megatron's
`TransformerLayer` mixes `torch.nn.Module` with `ABC`). `torch.__version__` is "2.15.0" so
`is_torch_min_version(...)` checks pass; CUDA and torch.distributed report "not available".

Only for a subprocess (tests/oracle/mcore_verdicts.py): never install it in the pytest process, where
other tests probe for a real torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from abc import ABCMeta
from unittest.mock import MagicMock

TORCH_VERSION = "2.15.0"
_FALSE = {"torch.cuda": ("is_available", "is_initialized"), "torch.distributed": ("is_available", "is_initialized")}


class _StubMeta(ABCMeta):
    """Metaclass of the stub classes: unknown class attributes are mocks (e.g. `Function.apply`)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = MagicMock(name=f"{cls.__name__}.{name}")
        setattr(cls, name, value)
        return value


class _StubBase(metaclass=_StubMeta):
    def __init__(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return MagicMock(name=f"{type(self).__name__}().{name}")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if name in _FALSE.get(self.__name__, ()):
            value = MagicMock(name=full, return_value=False)
        elif name[:1].isupper():
            value = _StubMeta(name, (_StubBase,), {"__module__": self.__name__, "__qualname__": name})
        elif full in sys.modules:
            value = sys.modules[full]
        else:
            value = MagicMock(name=full)
        setattr(self, name, value)
        return value


class _TorchFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torch" or fullname.startswith("torch."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        if spec.name == "torch":
            module.__version__ = TORCH_VERSION
        return module

    def exec_module(self, module):
        parent, _, child = module.__name__.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)


def install() -> None:
    """Answer `torch` imports with stubs from now on (idempotent); refuses when a real torch is loaded."""
    if any(isinstance(f, _TorchFinder) for f in sys.meta_path):
        return
    if "torch" in sys.modules:
        raise RuntimeError("a real torch is already imported; the stub would shadow it")
    sys.meta_path.insert(0, _TorchFinder())
