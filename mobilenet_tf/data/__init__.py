"""Input pipelines: sources, preprocessing, the class list."""

from mobilenet_tf.data.labels import LABELS_FILE, read_labels, write_labels
from mobilenet_tf.data.preprocessing import (MEAN, STD, center_crop_and_resize,
                                             decode_image, eval_preprocess, normalize)
