"""The folder pipeline on real Imagenette photos (skipped without the shared tarball)."""

import os

import numpy as np
import pytest
from PIL import Image

from mobilenet_tf import data
from mobilenet_tf.benchmarks import imagenette as imagenette_tar
from data_helpers import collect

PER_CLASS = 25


@pytest.fixture(scope="module")
def imagenette(tmp_path_factory):
    if not os.path.exists(imagenette_tar.DEFAULT_TAR):
        pytest.skip(f"{imagenette_tar.DEFAULT_TAR} not present")
    return imagenette_tar.extract_subset(tmp_path_factory.mktemp("imagenette"), PER_CLASS)


def test_imagenette_train_and_eval(imagenette):
    cfg = data.DataConfig(dataset=f"folder:{imagenette}", image_size=(96, 96))
    tr = data.build_input(cfg, "train[:80%]", training=True, global_batch_size=16)
    assert len(tr.class_names) == 10 and tr.class_names[0] == "n01440764"
    assert tr.num_examples == 200
    for x, y in tr.input_fn(None).take(15):  # > 1 epoch; no false bad-image reports
        assert x.shape == (16, 96, 96, 3) and y.shape == (16, 10)
        assert -1 <= x.numpy().min() and x.numpy().max() <= 1 and x.numpy().std() > 0.1
    ev = data.build_input(cfg, "train[80%:]", training=False, global_batch_size=16,
                          class_names=tr.class_names)
    images, labels = collect(ev.input_fn(None))
    assert len(labels) == ev.num_examples == 50
    np.testing.assert_array_equal(np.bincount(labels), [5] * 10)
    assert tr.bad_images.count == 0 and ev.bad_images.count == 0


def test_imagenette_grayscale_photos_become_rgb(imagenette):
    cfg = data.DataConfig(dataset=f"folder:{imagenette}")
    files = sorted(str(p) for p in imagenette.glob("train/*/*.JPEG"))
    modes = [Image.open(f).mode for f in files]
    assert "L" in modes  # the subset holds some of Imagenette's grayscale photos
    for (image, _), path, mode in zip(data.iterate_uint8(cfg, "train", len(files)), files,
                                      modes):
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8, path
        if mode == "L":
            assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
