"""mobilenet_tf: MobileNets (Howard et al. 2017) from training data to a phone.

``mobilenet_v1``, ``profile`` and ``profile_model`` load Keras on first use, so that the
command lines can parse their flags without importing TensorFlow.
"""

import importlib

_EXPORTS = {"mobilenet_v1": "model", "profile": "profiler", "profile_model": "profiler"}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
