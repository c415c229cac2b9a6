"""mobilenet_tf: MobileNets (Howard et al. 2017) from training data to a phone."""

from mobilenet_tf.model import mobilenet_v1
from mobilenet_tf.profiler import profile, profile_model

__all__ = ["mobilenet_v1", "profile", "profile_model"]
__version__ = "0.1.0"
