"""Accuracy of any model format (run dir, .keras, SavedModel, .tflite) on a dataset."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mobilenet_tf.inference import images as images_lib, loading
from mobilenet_tf.rundir import record as run_record

# Probabilities are clipped below at this value before the log in the loss (quantized
# outputs can be exactly 0).
LOSS_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    model: str  # run dir, .keras, SavedModel dir or .tflite
    dataset: str  # DataConfig.dataset spec
    split: str | None = None  # None: data.folders.default_eval_split(dataset)
    data_dir: str | None = None
    checkpoint: str = run_record.DEFAULT_MODEL  # for run directories: final | best
    max_images: int | None = None  # None: the whole split
    crop_fraction: float | None = None  # None: the run's, else the default
    resolution: int | None = None  # None: the model's own input size


@dataclasses.dataclass
class EvalResult:
    top1: float
    top5: float
    loss: float | None  # mean cross-entropy of the probabilities; None if undefined
    num_images: int
    per_class_accuracy: dict[str, float | None]  # None for a class with no images
    model: str = ""
    format: str = ""
    dataset: str = ""
    split: str = ""
    image_size: list = dataclasses.field(default_factory=list)  # [height, width] fed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the ``k`` highest probabilities (ties broken by
    the lower class index, as ``np.argsort`` with a stable sort)?"""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def score(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> EvalResult:
    """Metrics from probabilities [n, C] and integer labels [n]."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(probs) != len(labels) or not len(labels):
        raise ValueError(f"need as many probability rows ({len(probs)}) as labels "
                         f"({len(labels)}), at least one")
    top1 = topk_correct(probs, labels, 1)
    top5 = topk_correct(probs, labels, 5)
    p_true = probs[np.arange(len(labels)), labels]
    loss = (float(np.mean(-np.log(np.clip(p_true, LOSS_EPSILON, 1.0))))
            if np.all(np.isfinite(probs)) else None)
    per_class = {}
    for i, name in enumerate(class_names):
        mask = labels == i
        per_class[name] = float(top1[mask].mean()) if mask.any() else None
    return EvalResult(top1=float(top1.mean()), top5=float(top5.mean()), loss=loss,
                      num_images=int(len(labels)), per_class_accuracy=per_class)


def evaluate_classifier(classifier: loading.Classifier, pairs,
                        batch_size: int = 64) -> EvalResult:
    """Runs ``classifier`` on (decoded uint8 image, label) pairs, streamed in batches,
    and scores it."""
    probs, labels, batch = [], [], []

    def flush():
        if batch:
            probs.append(classifier.predict_proba([image for image, _ in batch]))
            labels.extend(int(label) for _, label in batch)
            batch.clear()

    for pair in pairs:
        batch.append(pair)
        if len(batch) == batch_size:
            flush()
    flush()
    if not labels:
        raise ValueError("no images to evaluate on")
    result = score(np.concatenate(probs, 0), np.asarray(labels), classifier.class_names)
    result.model, result.format = classifier.path, classifier.format
    result.image_size = list(classifier.image_size)
    return result


def evaluate(config: EvalConfig) -> EvalResult:
    """Loads ``config.model`` and evaluates it on ``config.dataset``/``config.split``
    (all of it, streamed, or ``max_images`` spread over the classes)."""
    if config.split is None:
        from mobilenet_tf.data.folders import default_eval_split

        config = dataclasses.replace(config, split=default_eval_split(config.dataset))
    classifier = loading.load_classifier(config.model, checkpoint=config.checkpoint,
                                         crop_fraction=config.crop_fraction,
                                         resolution=config.resolution)
    # A run directory's other data settings (synthetic_*, label_offset, bad_images, ...)
    # apply to its evaluation too.
    run_data = (run_record.read_record(config.model).data.config or {}
                if loading.detect_format(config.model) == "run_dir" else {})
    source = images_lib.ImageSource(config.dataset, config.split, config.data_dir, run_data)
    if config.max_images is None:
        pairs = images_lib.iterate_images(source, None, classifier.class_names,
                                          classifier.image_size)
    else:
        images, labels = images_lib.load_images(source, config.max_images,
                                                classifier.class_names, classifier.image_size)
        pairs = zip(images, labels)
    result = evaluate_classifier(classifier, pairs)
    result.dataset, result.split = config.dataset, config.split
    return result


def format_result(result: EvalResult) -> str:
    """A readable multi-line report."""
    size = f", {'x'.join(map(str, result.image_size))} input" if result.image_size else ""
    lines = [f"model:      {result.model} ({result.format}{size})",
             f"dataset:    {result.dataset} split={result.split}",
             f"images:     {result.num_images}",
             f"top-1:      {100 * result.top1:.2f}%",
             f"top-5:      {100 * result.top5:.2f}%",
             f"loss:       {result.loss:.4f}" if result.loss is not None else "loss:       n/a",
             "per-class top-1:"]
    width = max((len(n) for n in result.per_class_accuracy), default=0)
    for name, acc in result.per_class_accuracy.items():
        lines.append(f"  {name:<{width}}  " + (f"{100 * acc:6.2f}%" if acc is not None
                                                else "  (no images)"))
    return "\n".join(lines)
