"""Package names that import their module on first use (PEP 562), so that a command line
can import its config and parse its flags before TensorFlow is imported."""

from __future__ import annotations

import importlib
import sys


def module_getattr(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to the submodule
    that defines it; the first access imports it and caches the value on the package."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
