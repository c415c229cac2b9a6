"""Input pipelines: sources, preprocessing, the class list."""

from mobilenet_tf.data.config import DataConfig
from mobilenet_tf.data.labels import LABELS_FILE, read_labels, write_labels
from mobilenet_tf.data.pipeline import BadImages, InputPipeline, build_input, iterate_uint8
from mobilenet_tf.data.preprocessing import (EVAL_CROP_FRACTION, MEAN, STD,
                                             center_crop_and_resize, decode_image,
                                             eval_preprocess, normalize)
from mobilenet_tf.data.sources import parse_dataset_spec, parse_split
