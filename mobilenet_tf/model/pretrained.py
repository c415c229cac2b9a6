"""Starting a model from pretrained weights (``--initial_weights``).

``load_initial_weights(model, spec, alpha=..., resolution=...)`` copies weights into
``model`` layer by layer, by layer name, wherever every tensor's shape matches, and
returns a :class:`LoadReport`: what was loaded, what was not and why, and a provenance
record (the spec, the resolved file, its sha256) for the run directory. Layers it does
not load keep the values they were built with, so a classifier whose class count
differs from the file's (``conv_preds``) stays freshly initialized while the rest of the
network is the pretrained one (by default that new classifier starts at zero).

``spec`` is ``"imagenet"`` (Keras' published no-top file for ``alpha`` and
``resolution``, taken from the Keras cache, downloaded when online) or a weights file:

- ``.weights.h5`` written by Keras 3 ``save_weights`` (e.g. the project's shared
  ImageNet files, 1001 outputs);
- ``.keras`` (the weights inside are read; the model is not deserialized);
- a legacy Keras 2 ``.h5`` (``keras.applications`` files, full-model or weights-only).

The file is read directly with h5py, so it may come from a model with any class count
or without a top.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import zipfile

import h5py
import numpy as np

from mobilenet_tf.model.architecture import PAPER_ALPHAS
from mobilenet_tf.model.builder import CLASSIFIER_LAYER, imagenet_weights_path, mobilenet_v1

IMAGENET = "imagenet"


@dataclasses.dataclass
class LoadReport:
    """What ``load_initial_weights`` did."""

    spec: str  # as given: "imagenet" or a path
    path: str  # the file read
    sha256: str
    loaded: list  # names of the layers loaded
    not_loaded: dict  # layer name -> why (not in the file / shapes differ)
    unused: list  # layers of the file that this model does not have
    tensors_loaded: int
    tensors_total: int  # tensors of the model's layers
    # The file's own classifier (kernel, bias) when it has one that was not loaded (a
    # class-count change): what classifier_init.init_from_source maps onto new classes.
    source_classifier: tuple | None = dataclasses.field(default=None, repr=False)

    @property
    def classifier_loaded(self) -> bool:
        return CLASSIFIER_LAYER in self.loaded

    @property
    def backbone_not_loaded(self) -> list:
        """Layers other than the classifier left at their initial values."""
        return [n for n in self.not_loaded if n != CLASSIFIER_LAYER]

    def provenance(self) -> dict:
        """JSON-ready record of where the weights came from (for the run directory)."""
        return {"spec": self.spec, "path": os.path.abspath(self.path),
                "sha256": self.sha256, "tensors_loaded": self.tensors_loaded,
                "tensors_total": self.tensors_total, "layers_loaded": len(self.loaded),
                "not_loaded": dict(self.not_loaded), "unused_in_file": list(self.unused)}

    def summary(self) -> str:
        """One line, plus one line per layer not loaded."""
        lines = [f"Initial weights {self.spec!r} ({self.path}, sha256 {self.sha256[:12]}): "
                 f"loaded {self.tensors_loaded} of {self.tensors_total} tensors "
                 f"({len(self.loaded)} layers); {len(self.not_loaded)} layers not loaded"
                 + (":" if self.not_loaded else ".")]
        lines += [f"  {name}: {why}" for name, why in self.not_loaded.items()]
        return "\n".join(lines)


def resolve_weights_path(spec: str, alpha: float = 1.0, resolution: int = 224,
                         include_top: bool = False) -> str:
    """The file behind ``spec``; ValueError naming --initial_weights (one line) when it
    cannot be had. ``include_top``: for "imagenet", Keras' file with the 1000-class
    classifier (--classifier_init=source needs it) instead of the no-top one."""
    if spec == IMAGENET:
        if alpha not in PAPER_ALPHAS:
            raise ValueError(f"--initial_weights=imagenet: Keras publishes ImageNet weights "
                             f"for --alpha in {list(PAPER_ALPHAS)} only, not {alpha}; pass "
                             "a weights file instead")
        make = (f"python -m mobilenet_tf.weights --alpha={alpha} --resolution={resolution}"
                + ("" if include_top else " --noinclude_top") + " OUT.weights.h5")
        return imagenet_weights_path(  # offline: its error names the file and where it goes
            alpha, int(resolution), include_top=include_top,
            asked_as="--initial_weights=imagenet",
            instead=f"pass --initial_weights=FILE, a file made by '{make}' where Keras "
                    "can download (it writes Keras' file; --from_tflite=FILE converts "
                    "Google's mobilenet_v1_*.tflite instead)")
    if not isinstance(spec, (str, os.PathLike)) or not os.path.isfile(spec):
        raise ValueError(f"--initial_weights={spec!r}: no such file; use 'imagenet' or a "
                         ".weights.h5, .keras or .h5 file")
    return str(spec)


def read_weight_file(path: str) -> dict:
    """``{layer name: [arrays in the layer's variable order]}`` from a weights file."""
    try:
        if zipfile.is_zipfile(path):  # .keras: a zip holding model.weights.h5
            with zipfile.ZipFile(path) as z:
                buffer = io.BytesIO(z.read("model.weights.h5"))
            with h5py.File(buffer, "r") as f:
                return _read_keras3(f, path)
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return _read_legacy(f.get("model_weights", f))
            return _read_keras3(f, path)
    except (OSError, KeyError) as e:
        raise ValueError(f"--initial_weights={path}: cannot read it as Keras weights "
                         f"(.weights.h5, .keras or .h5): {' '.join(str(e).split())[:200]}"
                         ) from None


def _read_keras3(f: h5py.File, path: str) -> dict:
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars" and len(obj):
            layer = obj.attrs.get("name")
            if layer is not None:
                found[str(layer)] = [np.asarray(obj[str(i)]) for i in range(len(obj))]

    f.visititems(visit)
    if not found:
        raise ValueError(f"--initial_weights={path}: the file names no layers (written by "
                         "an older Keras?); load it into its model and save that as .keras")
    return found


def _read_legacy(group: h5py.Group) -> dict:
    found = {}
    for layer in group.attrs["layer_names"]:
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        g = group[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in g.attrs.get("weight_names", [])]
        if names:
            found[layer] = [np.asarray(g[n]) for n in names]
    return found


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_initial_weights(model, spec: str, alpha: float = 1.0, resolution: int = 224,
                         zero_new_classifier: bool = True,
                         include_top: bool = False) -> LoadReport:
    """Loads ``spec`` into ``model`` by layer name where all shapes match (see the module
    docstring); ValueError naming --initial_weights when no layer matches.

    ``zero_new_classifier``: a classifier not loaded from the file starts at zero (uniform
    predictions, loss ln K) instead of its random init, whose logits on pretrained
    features are large and random; with it the head-only phase converges in about one
    epoch (measured in docs/finetuning.md). ``include_top``: for "imagenet", Keras' file
    with its 1000-class classifier (what --classifier_init=source maps from) instead of
    the no-top one."""
    path = resolve_weights_path(spec, alpha, resolution, include_top=include_top)
    values = read_weight_file(path)
    loaded, not_loaded, tensors_loaded, tensors_total = [], {}, 0, 0
    for layer in model.layers:
        store = {}
        layer.save_own_variables(store)  # the layer's own variables, in its save order
        if not store:
            continue
        ordered = [store[str(i)] for i in range(len(store))]
        tensors_total += len(ordered)
        source = values.get(layer.name)
        if source is None:
            not_loaded[layer.name] = "not in the file"
            continue
        want = [tuple(v.shape) for v in ordered]
        have = [tuple(a.shape) for a in source]
        if want != have:
            not_loaded[layer.name] = f"shapes differ: file {have}, model {want}"
            continue
        layer.load_own_variables({str(i): a for i, a in enumerate(source)})
        loaded.append(layer.name)
        tensors_loaded += len(source)
    if not loaded:
        raise ValueError(f"--initial_weights={spec!r}: no layer of {path} matches this model "
                         "(check --alpha, --variant and --depth_multiplier against the "
                         "model the weights came from)")
    if zero_new_classifier and CLASSIFIER_LAYER in not_loaded:
        for v in model.get_layer(CLASSIFIER_LAYER).weights:
            v.assign(np.zeros(v.shape, v.dtype))
    names = {layer.name for layer in model.layers}
    unused = sorted(n for n in values if n not in names)
    file_classifier = values.get(CLASSIFIER_LAYER)
    source = (tuple(file_classifier) if CLASSIFIER_LAYER in not_loaded
              and file_classifier is not None and len(file_classifier) == 2 else None)
    return LoadReport(spec=str(spec), path=path, sha256=file_sha256(path), loaded=loaded,
                      not_loaded=not_loaded, unused=unused, tensors_loaded=tensors_loaded,
                      tensors_total=tensors_total, source_classifier=source)


# ----------------------------------------------------------------------------- making files
def imagenet_model(alpha: float, resolution: int, include_top: bool = True):
    """Our MobileNet-V1 (1000 classes, or no top) holding Keras' published ImageNet
    weights for ``alpha`` and ``resolution`` (the Keras cache, or downloaded), and the
    LoadReport; what ``python -m mobilenet_tf.weights`` saves."""
    path = imagenet_weights_path(
        alpha, resolution, include_top, asked_as="", instead=f"convert Google's "
        f"mobilenet_v1_{alpha}_{resolution}.tflite instead with --from_tflite=FILE")
    model = mobilenet_v1((resolution, resolution, 3), alpha=alpha, include_top=include_top,
                         num_classes=1000, classifier_activation=None)
    report = load_initial_weights(model, path, zero_new_classifier=False)
    if report.not_loaded:
        raise ValueError(f"{report.path}: layers {sorted(report.not_loaded)} did not load "
                         f"into MobileNet alpha={alpha}: is it Keras' file?")
    return model, report


TFLITE_CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def tflite_model(path: str, include_top: bool = True):
    """Our MobileNet-V1 holding the weights of a MobileNet-V1 ``.tflite`` (Google's
    mobilenet_v1_{alpha}_{res}.tflite, float or quantized: dequantized here); alpha, the
    input size and the class count are read from the file. Its batch norm is folded into
    the convolutions' kernels and biases, so each BN layer gets gamma 1, beta = the folded
    bias, mean 0, variance 1 - epsilon: an identity in inference mode (as the shared
    files, ../shared/data/pretrained/README.md)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()  # LiteRT's only view of the ops, in order
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"--from_tflite={path}: cannot read it as a TFLite model: "
                         f"{' '.join(str(e).split())[:200]}") from None
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] in TFLITE_CONVOLUTIONS]
    if len(convs) not in (27, 28):
        raise ValueError(f"--from_tflite={path}: {len(convs)} convolutions; MobileNet-V1 "
                         "has 27, and a classifier")
    try:
        arrays = [[_dequantized(interpreter, details[i]) if i >= 0 else None
                   for i in op["inputs"][1:3]] for op in convs]
    except ValueError as e:  # weights computed by the graph (float16 files)
        raise ValueError(f"--from_tflite={path}: its weights are not constants "
                         f"({' '.join(str(e).split())[:120]}); use the float or uint8 "
                         "model") from None
    has_top = len(convs) == 28
    if include_top and not has_top:
        raise ValueError(f"--from_tflite={path} has no classifier; use --noinclude_top")
    _, rows, cols, _ = interpreter.get_input_details()[0]["shape"]
    model = mobilenet_v1((int(rows), int(cols), 3), alpha=arrays[0][0].shape[0] / 32,
                         include_top=include_top,
                         num_classes=arrays[-1][0].shape[0] if has_top else 1000,
                         classifier_activation=None)
    layers = [layer for layer in model.layers if layer.name in _conv_names(model)]
    for layer, op, (kernel, bias) in zip(layers, convs, arrays):
        _set_folded(model, layer, op["op_name"], kernel, bias, path)
    return model


def _conv_names(model) -> set:
    return {layer.name for layer in model.layers
            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")}


def _dequantized(interpreter, detail):
    value = interpreter.get_tensor(detail["index"])
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), np.float32)
    if value.dtype.kind == "f" or not scales.size:
        return value.astype(np.float32)
    shape = [1] * value.ndim
    if scales.size > 1:  # per channel
        shape[q["quantized_dimension"]] = -1
    zero = np.asarray(q["zero_points"], np.float32).reshape(shape)
    return (value.astype(np.float32) - zero) * scales.reshape(shape)


def _set_folded(model, layer, op_name, kernel, bias, path):
    """One TFLite convolution into ``layer`` (and its batch norm, as an identity)."""
    want = tuple(layer.kernel.shape)
    if op_name == "CONV_2D":  # O H W I -> H W I O
        kernel = np.transpose(kernel, (1, 2, 3, 0))
    elif op_name == "DEPTHWISE_CONV_2D":  # 1 H W (C*M) -> H W C M
        kernel = kernel[0]
    else:  # FULLY_CONNECTED: K D -> 1 1 D K
        kernel = kernel.T
    if kernel.size != int(np.prod(want)) or (op_name == "CONV_2D" and kernel.shape != want):
        raise ValueError(f"--from_tflite={path}: {op_name} kernel {kernel.shape} does not "
                         f"fit {layer.name} {want}: not a MobileNet-V1 (depth multiplier 1)")
    kernel = kernel.reshape(want)
    bias = np.zeros(want[-1] if op_name != "DEPTHWISE_CONV_2D" else int(np.prod(want[2:])),
                     np.float32) if bias is None else bias
    if layer.name == CLASSIFIER_LAYER:
        layer.set_weights([kernel, bias])
        return
    layer.set_weights([kernel])
    bn = model.get_layer(f"{layer.name}_bn")
    ones = np.ones_like(bias)
    bn.set_weights([ones, bias, np.zeros_like(bias), ones - bn.epsilon])
