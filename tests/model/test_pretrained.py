"""Pretrained starts (mobilenet_tf.model.pretrained): by-name loading from every file format,
the classifier re-initialized on a class-count change, the report and provenance, the
errors; the shared ImageNet files when present."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest

from mobilenet_tf.model import pretrained
from mobilenet_tf.model.builder import mobilenet_v1

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "data",
                      "pretrained")
if not os.path.isdir(SHARED):  # a worktree under /work/wt/NAME or the main checkout
    SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                          "pretrained")


def _tiny(num_classes, alpha=0.25, seed=0):
    keras.utils.set_random_seed(seed)
    return mobilenet_v1((32, 32, 3), alpha=alpha, num_classes=num_classes,
                        classifier_activation=None)


def _randomize(model, seed=1):
    """Distinct values in every variable (BN statistics included)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype("float32") + 2.0)
    return model


def _by_name(model):
    return {(layer.name, i): np.array(w) for layer in model.layers
            for i, w in enumerate(layer.weights)}


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras", ".h5"])
def test_class_count_change_reinitializes_only_the_classifier(tmp_path, suffix):
    source = _randomize(_tiny(5))
    path = str(tmp_path / f"w{suffix}")
    if suffix == ".weights.h5":
        source.save_weights(path)
    else:
        source.save(path)  # .h5: Keras' legacy format
    target = _tiny(3, seed=2)
    before = _by_name(target)
    report = pretrained.load_initial_weights(target, path, zero_new_classifier=False)
    want, got = _by_name(source), _by_name(target)
    for key, value in got.items():
        if key[0] == "conv_preds":
            np.testing.assert_array_equal(value, before[key])  # left as built
        else:
            np.testing.assert_array_equal(value, want[key])
    n_tensors = sum(len(layer.weights) for layer in target.layers)
    assert report.tensors_total == n_tensors and report.tensors_loaded == n_tensors - 2
    # The file's own classifier is kept for --classifier_init=source.
    for kept, original in zip(report.source_classifier,
                              source.get_layer("conv_preds").get_weights()):
        np.testing.assert_array_equal(kept, original)
    assert list(report.not_loaded) == ["conv_preds"] and not report.backbone_not_loaded
    assert "shapes differ" in report.not_loaded["conv_preds"] and not report.classifier_loaded
    assert f"loaded {n_tensors - 2} of {n_tensors} tensors" in report.summary()
    zeroed = _tiny(3, seed=2)
    pretrained.load_initial_weights(zeroed, path)  # default: the new classifier at zero
    for key, value in _by_name(zeroed).items():
        if key[0] == "conv_preds":
            assert not value.any()
        else:
            np.testing.assert_array_equal(value, want[key])
    prov = json.loads(json.dumps(report.provenance()))
    assert prov["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert prov["path"] == os.path.abspath(path) and prov["spec"] == path


def test_same_class_count_loads_everything_and_outputs_match(tmp_path):
    source = _randomize(_tiny(4), seed=3)
    path = str(tmp_path / "w.weights.h5")
    source.save_weights(path)
    target = _tiny(4, seed=4)
    report = pretrained.load_initial_weights(target, path)
    assert report.classifier_loaded and not report.not_loaded and not report.unused
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(target(x, training=False), source(x, training=False),
                               rtol=1e-5, atol=1e-5)


def test_no_top_source_and_unused_layers_are_reported(tmp_path):
    headless = mobilenet_v1((32, 32, 3), alpha=0.25, include_top=False)
    path = str(tmp_path / "notop.weights.h5")
    _randomize(headless).save_weights(path)
    report = pretrained.load_initial_weights(_tiny(3), path)
    assert report.not_loaded == {"conv_preds": "not in the file"}
    bigger = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=3, variant="shallow")
    report = pretrained.load_initial_weights(bigger, path)  # shallow lacks blocks 7-11
    assert report.unused == sorted(f"conv_{k}_{i}{s}" for i in range(7, 12)
                                   for k in ("dw", "pw") for s in ("", "_bn"))


def test_errors_name_the_flag(tmp_path):
    model = _tiny(3)
    with pytest.raises(ValueError, match="--initial_weights=.*no such file"):
        pretrained.load_initial_weights(model, str(tmp_path / "missing.weights.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="--initial_weights=.*cannot read it as Keras"):
        pretrained.load_initial_weights(model, str(junk))
    other = str(tmp_path / "alpha05.weights.h5")
    mobilenet_v1((32, 32, 3), alpha=0.5, num_classes=3).save_weights(other)
    with pytest.raises(ValueError, match="no layer of .* matches.*--alpha"):
        pretrained.load_initial_weights(model, other)
    with pytest.raises(ValueError, match="--alpha in"):
        pretrained.load_initial_weights(model, "imagenet", alpha=0.3)


KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"


def keras_file(home, alpha=0.25, rows=128, include_top=True, seed=5, name_rows=None):
    """Keras' published file for (alpha, rows) as keras.applications names and writes it
    (a Keras 2 weights-only .h5 under $KERAS_HOME/models/), from a randomized
    keras.applications.MobileNet; returns (that model, the path)."""
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    model = keras.applications.MobileNet(input_shape=(rows, rows, 3), alpha=alpha,
                                         include_top=include_top, weights=None,
                                         classifier_activation=None)
    _randomize(model, seed)
    text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    name = (f"mobilenet_{text}_{name_rows or rows}_tf"
            f"{'' if include_top else '_no_top'}.h5")
    os.makedirs(os.path.join(home, "models"), exist_ok=True)
    path = os.path.join(home, "models", name)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model, path


def _no_download(*args, **kwargs):
    raise OSError(f"no network (test): get_file{args}")


@pytest.mark.parametrize("classifier_init", ["source", "zeros"])
def test_imagenet_takes_the_keras_file_the_classifier_init_needs(tmp_path, monkeypatch,
                                                                 classifier_init):
    include_top = classifier_init == "source"  # as training.task.build_task asks
    home = str(tmp_path / "kh")
    source, path = keras_file(home, include_top=include_top)
    keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=0.25, weights=path,
                                 include_top=include_top)  # Keras' own loader takes it
    monkeypatch.setenv("KERAS_HOME", home)
    monkeypatch.setattr(keras.utils, "get_file", _no_download)  # only the cached file
    model = mobilenet_v1((128, 128, 3), alpha=0.25, num_classes=3)
    report = pretrained.load_initial_weights(model, "imagenet", alpha=0.25, resolution=128,
                                             include_top=include_top)
    assert report.path == path and report.spec == "imagenet"
    assert not report.backbone_not_loaded and not report.unused
    want = {layer.name: layer.get_weights() for layer in source.layers}
    for layer in model.layers:
        if layer.weights and layer.name != "conv_preds":
            for got, expected in zip(layer.get_weights(), want[layer.name]):
                np.testing.assert_array_equal(got, expected)
    if include_top:  # the file's 1000-class classifier, for --classifier_init=source
        kernel, bias = report.source_classifier
        assert kernel.shape == (1, 1, 256, 1000) and bias.shape == (1000,)
        np.testing.assert_array_equal(kernel, want["conv_preds"][0])
    else:
        assert report.not_loaded == {"conv_preds": "not in the file"}
        assert report.source_classifier is None


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
@pytest.mark.parametrize("rows", [128, 160, 192, 224])
def test_imagenet_asks_keras_for_its_published_file(tmp_path, monkeypatch, alpha, rows):
    home = str(tmp_path / "kh")
    monkeypatch.setenv("KERAS_HOME", home)
    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return os.path.join(kwargs["cache_dir"], kwargs["cache_subdir"], fname)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    for include_top, name in ((True, f"mobilenet_{text}_{rows}_tf.h5"),
                              (False, f"mobilenet_{text}_{rows}_tf_no_top.h5")):
        path = pretrained.resolve_weights_path("imagenet", alpha, rows, include_top)
        assert path == os.path.join(home, "models", name)
        assert calls.pop() == (name, KERAS_URL + name, {"cache_subdir": "models",
                                                        "cache_dir": home})


def test_imagenet_online_downloads_once_then_uses_the_cache(tmp_path, monkeypatch):
    home = str(tmp_path / "kh")
    published = str(tmp_path / "published")
    source, _ = keras_file(published, alpha=0.5, rows=160)
    monkeypatch.setenv("KERAS_HOME", home)
    calls = []

    def get_file(fname, origin, cache_subdir, cache_dir):  # a download into the cache
        calls.append(fname)
        target = os.path.join(cache_dir, cache_subdir, fname)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(os.path.join(published, "models", fname), "rb") as f:
            data = f.read()
        with open(target, "wb") as f:
            f.write(data)
        return target

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    for _ in range(2):
        model = mobilenet_v1((160, 160, 3), alpha=0.5, num_classes=5)
        report = pretrained.load_initial_weights(model, "imagenet", 0.5, 160,
                                                 include_top=True)
        assert report.source_classifier[0].shape == (1, 1, 512, 1000)
    assert calls == ["mobilenet_5_0_160_tf.h5"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 160, 160, 3)).astype("float32")
    features = keras.Model(model.input, model.get_layer("conv_pw_13_relu").output)
    want = keras.Model(source.input, source.get_layer("conv_pw_13_relu").output)
    np.testing.assert_allclose(features(x), want(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("include_top, name, make", [
    (False, "mobilenet_7_5_128_tf_no_top.h5",
     "python -m mobilenet_tf.weights --alpha=0.75 --resolution=128 --noinclude_top OUT"),
    (True, "mobilenet_7_5_128_tf.h5",
     "python -m mobilenet_tf.weights --alpha=0.75 --resolution=128 OUT")])
def test_imagenet_offline_says_which_file_goes_where_and_what_to_pass(
        tmp_path, monkeypatch, include_top, name, make):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(keras.utils, "get_file", _no_download)
    want = tmp_path / "kh" / "models" / name
    with pytest.raises(ValueError) as e:
        pretrained.load_initial_weights(_tiny(3), "imagenet", alpha=0.75, resolution=128,
                                        include_top=include_top)
    message = str(e.value)
    assert "\n" not in message and message.startswith("--initial_weights=imagenet: ")
    assert f"put that file at {want} " in message and "$KERAS_HOME/models/" in message
    assert "~/.keras/models/" in message and "pass --initial_weights=FILE" in message
    assert make in message and "--from_tflite=FILE" in message
    assert "weights=<path" not in message and "weights='imagenet'" not in message


def _shared(name):
    path = os.path.join(SHARED, name)
    if not os.path.exists(path):
        pytest.skip(f"shared pretrained weights {path} absent")
    return path


def test_shared_imagenet_file_into_ten_classes():
    path = _shared("mobilenet_v1_0.25_128_imagenet.weights.h5")
    model = mobilenet_v1((128, 128, 3), alpha=0.25, num_classes=10,
                         classifier_activation=None)
    report = pretrained.load_initial_weights(model, path)
    assert list(report.not_loaded) == ["conv_preds"] and report.tensors_loaded > 100
    # Folded batch norm (README): gamma 1, mean 0, variance 1 - epsilon, in that order.
    bn = model.get_layer("conv_pw_13_bn")
    gamma, _, mean, var = (np.array(w) for w in bn.weights)
    np.testing.assert_allclose(gamma, 1.0)
    np.testing.assert_allclose(mean, 0.0)
    np.testing.assert_allclose(var, 1.0 - bn.epsilon, rtol=1e-6)
    full = mobilenet_v1((128, 128, 3), alpha=0.25, num_classes=1001)
    assert pretrained.load_initial_weights(full, path).classifier_loaded
