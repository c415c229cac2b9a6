"""Input pipelines: sources, preprocessing, the class list.

The names below load their modules on first use, so that ``DataConfig`` and the spec
parsers (no TensorFlow) can be imported by a command line before TensorFlow is.
"""

import importlib

_EXPORTS = {
    "DataConfig": "config",
    "LABELS_FILE": "labels", "read_labels": "labels", "write_labels": "labels",
    "BadImages": "pipeline", "InputPipeline": "pipeline", "build_input": "pipeline",
    "iterate_uint8": "pipeline",
    "EVAL_CROP_FRACTION": "config", "MEAN": "preprocessing", "STD": "preprocessing",
    "center_crop_and_resize": "preprocessing", "decode_image": "preprocessing",
    "eval_preprocess": "preprocessing", "normalize": "preprocessing",
    "parse_dataset_spec": "specs", "parse_split": "specs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
