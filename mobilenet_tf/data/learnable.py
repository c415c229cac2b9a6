"""The training inputs, refused before any step when they cannot be learned or measured:
fewer than 2 classes; a split carved from the images of each class (``NAME[a%:b%]``, or a
flat folder's 'train'/'validation' parts) that leaves a class without images (one image
cannot be both trained on and held out); a held-out split that selects no images. Each
is one ValueError naming the flag and what would be valid.
"""

from __future__ import annotations

from typing import Optional

from mobilenet_tf.data.config import DataConfig
from mobilenet_tf.data.specs import (FLAT_SPLITS, EmptySplit, SplitSpec, holdout_count,
                                     parse_dataset_spec, parse_split)

_LARGEST_CLASS = 10_000  # the most images per class tried when finding the fewest needed


def flat_part(dataset: str, split: SplitSpec) -> Optional[str]:
    """'train', 'validation' or 'all' when ``split`` is a part of a flat folder
    (``PATH/<class>/<image>``), else None."""
    from mobilenet_tf.data.folders import folder_layout

    spec = parse_dataset_spec(dataset)
    if spec.kind != "folder" or split.name not in FLAT_SPLITS:
        return None
    return split.name if folder_layout(spec.path) == "classes" else None


def images_kept(n: int, split: SplitSpec, part: Optional[str], fraction: float) -> int:
    """How many of a class's ``n`` images ``split`` selects (``part``: see flat_part)."""
    held = holdout_count(n, fraction)
    k = {"train": n - held, "validation": held}.get(part, n)
    return len(range(k)[split.select(k)]) if split.sliced else k


def fewest_images(split: SplitSpec, part: Optional[str], fraction: float) -> Optional[int]:
    """The fewest images a class needs for ``split`` to select one of them (None: none)."""
    return next((n for n in range(1, _LARGEST_CLASS + 1)
                 if images_kept(n, split, part, fraction) > 0), None)


def _carving(flag: str, split: str, cfg: DataConfig) -> tuple[str, Optional[int]]:
    """What ``split`` keeps of each class, in words, and the fewest images a class
    needs for one to be kept (None when the split is not carved per class)."""
    spec = parse_split(split, cfg.dataset)
    part = flat_part(cfg.dataset, spec)
    if not spec.sliced and part not in ("train", "validation"):
        return "", None
    how = (f"{flag}={split} keeps {spec.start or 0:g}%-{100 if spec.end is None else spec.end:g}%"
           " of each class" if spec.sliced else "")
    if part in ("train", "validation"):
        held = (f"--holdout_fraction={cfg.holdout_fraction:g} holds out that share of each "
                "class for 'validation'")
        how = f"{held}{', and ' + how if how else ''}"
    return how, fewest_images(spec, part, cfg.holdout_fraction)


def _build(build, flag: str, split: str, cfg: DataConfig, role: str):
    """``build()``; an empty split is one line naming ``flag`` and what would fill it."""
    try:
        return build()
    except EmptySplit as err:
        how, need = _carving(flag, split, cfg)
        if need is None:
            raise ValueError(f"{flag}={split}: {err}") from None
        raise ValueError(
            f"{flag}={split} selects no images of --dataset={cfg.dataset}: {how}, so a "
            f"class needs at least {need} images for one to be {role}, and none has as "
            f"many; add images to the classes, or choose another {flag}") from None


def _check_classes(train, cfg: DataConfig, train_split: str) -> None:
    names = list(train.class_names)
    if len(names) < 2:
        folder = parse_dataset_spec(cfg.dataset).kind == "folder"
        raise ValueError(
            f"--dataset={cfg.dataset}: training needs at least 2 classes, and "
            f"--train_split={train_split} has {len(names)} ({', '.join(names)}); add a "
            + ("class folder (PATH/<class>/<image>) for each other class" if folder
               else "dataset with images of at least 2 classes"))


def _check_each_class(inp, flag: str, split: str, cfg: DataConfig, role: str) -> None:
    """ValueError when ``split`` is carved per class and leaves a class without images."""
    if inp is None or inp.class_counts is None:
        return
    empty = [n for n, c in zip(inp.class_names, inp.class_counts) if c == 0]
    if not empty:  # the usual case: no second listing of the folder (``_carving``)
        return
    how, need = _carving(flag, split, cfg)
    if need is None:
        return
    more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
    raise ValueError(
        f"{flag}={split} has no image of class {', '.join(empty[:5])}{more} of --dataset="
        f"{cfg.dataset}: {how}, so a class needs at least {need} images for one to be "
        f"{role}; add images to that class, remove it, or "
        + ("train without evaluation (--eval_split=)" if role == "held out"
           else f"choose another {flag}"))


def build_training_inputs(cfg: DataConfig, train_split: str, eval_split: str,
                          batch_size: int):
    """The train input and the eval input (None without ``eval_split``), checked as the
    module docstring says."""
    from mobilenet_tf.data.pipeline import build_input

    train = _build(lambda: build_input(cfg, split=train_split, training=True,
                                       global_batch_size=batch_size),
                   "--train_split", train_split, cfg, "trained on")
    _check_classes(train, cfg, train_split)
    _check_each_class(train, "--train_split", train_split, cfg, "trained on")
    evaluation = None
    if eval_split:
        evaluation = _build(lambda: build_input(cfg, split=eval_split, training=False,
                                                global_batch_size=batch_size,
                                                class_names=train.class_names),
                            "--eval_split", eval_split, cfg, "held out")
        _check_each_class(evaluation, "--eval_split", eval_split, cfg, "held out")
    return train, evaluation
