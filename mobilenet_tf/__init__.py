"""mobilenet_tf: MobileNets (Howard et al. 2017) from training data to a phone.

``mobilenet_v1``, ``profile`` and ``profile_model`` load Keras on first use, so that the
command lines can parse their flags without importing TensorFlow.
"""

from mobilenet_tf.lazy_imports import module_getattr

_EXPORTS = {"mobilenet_v1": "model.builder", "profile": "model.costs",
            "profile_model": "model.costs"}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__ = module_getattr(__name__, _EXPORTS)
