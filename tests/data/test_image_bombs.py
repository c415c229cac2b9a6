"""Image bombs: a small file that decodes to a huge image is decoded at reduced scale
(baseline JPEG) or refused before decoding, with bounded memory, in every path that
decodes images (data pipeline, iterate_uint8, predict)."""

import io
import json
import logging
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_helpers import collect, make_folder
from mobilenet_tf import data
from mobilenet_tf.inference import prediction
from mobilenet_tf.data import augment, preprocessing
from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _flat(size, fmt, mode="RGB", **kw) -> bytes:
    """A flat-colour image of (width, height) ``size``: tiny as a file, big decoded."""
    buf = io.BytesIO()
    Image.new(mode, size, 90 if mode == "L" else (200, 30, 30)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_claiming(width, height) -> bytes:
    """A real 8x8 PNG whose header claims ``width`` x ``height`` (a valid IHDR CRC): a
    decoder that trusted it would allocate width*height*3 bytes."""
    png = bytearray(_flat((8, 8), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


@pytest.mark.parametrize("fmt,kw,progressive", [
    ("JPEG", {}, 0), ("JPEG", {"progressive": True}, 1), ("PNG", {}, 0), ("GIF", {}, 0),
    ("BMP", {}, 0)])
def test_header_shape_without_decoding(fmt, kw, progressive):
    encoded = _flat((70, 30), fmt, **kw)
    assert preprocessing.header_shape(encoded).numpy().tolist() == [30, 70]
    if fmt == "JPEG":
        assert preprocessing.jpeg_is_progressive(encoded).numpy() == progressive
    assert preprocessing.header_shape(_png_claiming(40000, 30000)).numpy().tolist() == \
        [30000, 40000]
    assert preprocessing.header_shape(b"not an image, just some text bytes").numpy().tolist() \
        == [0, 0]


def test_decode_reduces_baseline_jpeg_and_refuses_the_rest():
    big = _flat((1000, 600), "JPEG")
    assert preprocessing.decode_image(big, 200_000).shape == (300, 500, 3)  # 1/2 scale
    assert preprocessing.decode_image(big, 10_000).shape == (75, 125, 3)  # 1/8 scale
    assert preprocessing.decode_image(big, 600_000).shape == (600, 1000, 3)  # fits
    for encoded, why in ((_flat((1000, 600), "JPEG", progressive=True), "progressive JPEG"),
                         (_flat((1000, 600), "PNG"), "only baseline JPEGs"),
                         (big, "even its 1/8-scale")):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"image bomb refused before decoding: 1000x600 pixels "
                                 f"\\(600000 pixels\\) is above max_image_pixels=\\d+ and "
                                 f".*{why}"):
            preprocessing.decode_image(encoded, 9_000 if "1/8" in why else 200_000)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from mobilenet_tf.data import preprocessing
    encoded = open(sys.argv[1], "rb").read()
    small = tf.io.encode_jpeg(tf.zeros([64, 64, 3], tf.uint8)).numpy()
    preprocessing.decode_image(small, 1000)  # warm up: load the kernels of both paths
    preprocessing.decode_image(small, 0)
    def status(key):  # kB
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    def growth(fn):
        # Linux: writing 5 to clear_refs resets the peak (VmHWM) to the current RSS, so
        # an earlier, higher peak (TensorFlow's start-up) cannot hide this one.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS")
        out = fn()
        return out, (status("VmHWM") - before) / 1024
    shape, bounded = growth(lambda: preprocessing.decode_image(encoded, 1_000_000).shape)
    full_shape, full = growth(lambda: preprocessing.decode_image(encoded, 0).shape)  # control
    print("RESULT " + json.dumps([list(shape), bounded, list(full_shape), full]))
""")


def test_bomb_decodes_in_bounded_memory(tmp_path):
    """A 6000x6000 JPEG (36 MP, ~100 KB file) with a 1 MP limit: decoded at 1/8 scale,
    and the process's peak memory grows by a few MB, not the ~108 MB of a full decode (the
    full decode after it is the control that shows the measurement sees a decode)."""
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_flat((6000, 6000), "JPEG", mode="L"))
    assert path.stat().st_size < 1_000_000
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path)], env=ENV,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert line, proc.stderr[-3000:]
    shape, bounded, full_shape, full = json.loads(line[0][len("RESULT "):])
    assert shape == [750, 750, 3] and full_shape == [6000, 6000, 3]
    # Measured: +3 MB for the 1/8-scale decode, +64..110 MB for the full one (108 MB of
    # pixels; the allocator may reuse freed pages). Bounds with a wide margin:
    assert bounded < 20, f"reduced decode raised the peak by {bounded:.0f} MB"
    assert full > 50, f"a full decode raised the peak by only {full:.0f} MB"


def _bomb_folder(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train",))
    bomb = tmp_path / "train" / "a" / "bomb.png"
    bomb.write_bytes(_png_claiming(30000, 30000))
    large = tmp_path / "train" / "b" / "large.jpg"  # reducible: decoded at 1/4 scale
    large.write_bytes(_flat((1800, 1600), "JPEG"))
    return root, str(bomb)


@pytest.mark.parametrize("training", [False, True])
def test_pipeline_skips_a_bomb_naming_it_and_why(tmp_path, caplog, training):
    root, bomb = _bomb_folder(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, max_image_pixels=500_000)
    inp = data.build_input(cfg, "train", training=training, global_batch_size=2)
    with caplog.at_level(logging.WARNING):
        if training:
            for _ in inp.input_fn(None).take(12):
                pass
        else:
            _, labels = collect(inp.input_fn(None))
            assert len(labels) == 7  # 6 small + the large JPEG (reduced), not the bomb
    assert inp.bad_images.examples == [bomb]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"skipping bad image {bomb} (image bomb refused before decoding: 30000x30000" \
        in logged
    images = list(data.iterate_uint8(cfg, "train", 100))
    assert len(images) == 7 and max(im.shape[0] for im, _ in images) == 400  # 1600 / 4


@pytest.mark.parametrize("training", [False, True])
def test_error_policy_stops_naming_the_bomb_and_why(tmp_path, training):
    root, bomb = _bomb_folder(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{root}", image_size=16, bad_images="error",
                          max_image_pixels=500_000)
    inp = data.build_input(cfg, "train", training=training, global_batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"{bomb} \\(image bomb refused before decoding: 30000x30000"):
        for _ in inp.input_fn(None).take(12):
            pass


def test_default_limit_refuses_a_20000_pixel_square_png(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(20000, 20000))
    with pytest.raises(ValueError, match=f"{path}: image bomb refused before decoding: "
                       "20000x20000 pixels .* max_image_pixels=50000000"):
        prediction.read_image(str(path))
    large = tmp_path / "large.jpg"
    large.write_bytes(_flat((1200, 900), "JPEG"))
    assert prediction.read_image(str(large), max_pixels=300_000).shape == (450, 600, 3)


def test_max_image_pixels_is_validated():
    with pytest.raises(ValueError, match="--max_image_pixels must be >= 1"):
        data.DataConfig(max_image_pixels=0)


def test_crop_checks_the_limit_and_only_refusals_file_a_reason():
    """In a tf.data map (graph mode), as the training pipeline calls it: the JPEG crop
    checks the limit with its own size read, a large baseline JPEG is cropped from its
    reduced decode, a progressive one and a PNG are refused, and ``on_refusal`` runs for
    the refused ones only (before the error), with the reason."""
    images = [_flat((1000, 600), "JPEG"), _flat((300, 200), "JPEG"),
              _flat((1000, 600), "JPEG", progressive=True), _flat((1000, 600), "PNG"),
              _flat((300, 200), "PNG")]
    reasons = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, "")

    def crop(i, encoded):
        note = lambda why: reasons.insert(i[None], why[None])  # noqa: E731
        return i, augment.random_resized_crop(encoded, (24, 24), tf.stack([i, 3]),
                                              max_pixels=200_000, on_refusal=note)
    ds = tf.data.Dataset.from_tensor_slices((tf.range(5, dtype=tf.int64), images))
    kept = [int(i) for i, image in ds.map(crop).ignore_errors()
            if image.shape == (24, 24, 3)]
    assert kept == [0, 1, 4]
    keys, values = reasons.export()
    filed = dict(zip(keys.numpy().tolist(), (v.decode() for v in values.numpy())))
    assert sorted(filed) == [2, 3]
    assert "1000x600 pixels" in filed[2] and "progressive JPEG" in filed[2]
    assert "only baseline JPEGs" in filed[3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="progressive JPEG"):
        augment.random_resized_crop(images[2], (24, 24), tf.constant([1, 2], tf.int64),
                                    max_pixels=200_000)


def _gif(frames, size, colours=True) -> bytes:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), np.uint8)) if colours
              else Image.new("RGB", size, (i % 250, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_gif_frames_are_counted_as_pillow_counts_them(frames):
    encoded = _gif(frames, (60, 40))  # with extensions and local colour tables
    assert Image.open(io.BytesIO(encoded)).n_frames == frames
    assert int(preprocessing.gif_frames(encoded, 1000)) == frames
    assert int(preprocessing.gif_frames(encoded, 2)) == min(frames, 2)  # stops early
    assert int(preprocessing.gif_frames(encoded[:30], 1000)) <= 1  # truncated: no error


def test_many_frame_gif_is_refused_by_its_frames_and_its_first_frame_kept_below():
    """A GIF's decoder holds every frame (a 1.2 MB GIF of 300 2000x2000 frames raised the
    peak memory by 1.2 GB): the frames' pixels count together against the limit."""
    encoded = _gif(40, (200, 100), colours=False)  # 40 x 20,000 = 800,000 pixels
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="image bomb refused before decoding: a GIF of at least 26 "
                             "frames of 200x100 .* is above max_image_pixels=500000 and the "
                             "GIF decoder holds every frame"):
        preprocessing.decode_image(encoded, 500_000)
    assert preprocessing.decode_image(encoded, 800_000).shape == (100, 200, 3)
    decode = tf.function(lambda x: preprocessing.decode_image(x, 500_000))  # as in tf.data
    with pytest.raises(tf.errors.InvalidArgumentError, match="GIF decoder holds"):
        decode(encoded)
    assert decode(_gif(3, (200, 100))).shape == (100, 200, 3)
