"""Input pipelines: sources, preprocessing, the class list.

The names below load their modules on first use, so that ``DataConfig`` and the spec
parsers (no TensorFlow) can be imported by a command line before TensorFlow is.
"""

from mobilenet_tf.lazy_imports import module_getattr

_EXPORTS = {
    "DataConfig": "config",
    "LABELS_FILE": "labels", "read_labels": "labels", "write_labels": "labels",
    "BadImages": "pipeline", "InputPipeline": "pipeline", "build_input": "pipeline",
    "iterate_uint8": "pipeline", "Input": "interface", "BadImageTally": "interface",
    "EVAL_CROP_FRACTION": "config", "MEAN": "preprocessing", "STD": "preprocessing",
    "center_crop_and_resize": "preprocessing", "decode_image": "preprocessing",
    "eval_preprocess": "preprocessing", "normalize": "preprocessing",
    "parse_dataset_spec": "specs", "parse_split": "specs",
}
__all__ = sorted(_EXPORTS)

__getattr__ = module_getattr(__name__, _EXPORTS)
