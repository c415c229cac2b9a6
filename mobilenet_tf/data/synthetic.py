"""The "synthetic" dataset: a procedural, learnable image-classification task.

Class k is a coloured shape (``SHAPES[k % 5]`` in colour ``COLOURS[k // 5]``, e.g.
``red_circle``) of random position, size and shade, drawn on a textured background
(random dull-coloured sinusoidal gratings plus pixel noise). A small MobileNet learns it
to high accuracy in a minute or two of CPU training at 64 px, so the quickstart, tests
and benchmarks run offline. Everything is numpy, vectorised, and deterministic in
(seed, split).
"""

from __future__ import annotations

import zlib

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = {
    "red": (220, 30, 30),
    "blue": (30, 60, 230),
    "green": (30, 190, 40),
    "yellow": (235, 215, 20),
    "magenta": (210, 30, 210),
    "cyan": (20, 210, 220),
}
MAX_CLASSES = len(SHAPES) * len(COLOURS)
SPLITS = ("train", "validation", "test")


def class_names(num_classes: int) -> list[str]:
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"--synthetic_num_classes must be in [2, {MAX_CLASSES}] "
                         f"({len(SHAPES)} shapes x {len(COLOURS)} colours), got {num_classes}")
    colours = list(COLOURS)
    return [f"{colours[k // len(SHAPES)]}_{SHAPES[k % len(SHAPES)]}"
            for k in range(num_classes)]


def _split_seed(seed: int, split: str) -> list[int]:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} does not exist for --dataset=synthetic; "
                         f"valid splits: {', '.join(SPLITS)} (optionally sliced, e.g. "
                         "'train[:90%]')")
    return [int(seed), zlib.crc32(split.encode())]


def labels(num_examples: int, num_classes: int) -> np.ndarray:
    """Balanced labels: example i has class i % num_classes."""
    return (np.arange(num_examples) % num_classes).astype(np.int32)


def generate(num_examples: int, num_classes: int, image_size: int, seed: int = 0,
             split: str = "train", indices=None, chunk: int = 256):
    """Returns (images uint8 [n, s, s, 3], labels int32 [n]).

    ``indices`` (default: all of ``range(num_examples)``) picks which examples of the
    split to render; example i is the same image whatever else is rendered with it.
    """
    class_names(num_classes)  # validates num_classes
    base = _split_seed(seed, split)
    all_labels = labels(num_examples, num_classes)
    if indices is None:
        indices = np.arange(num_examples)
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), image_size, image_size, 3), np.uint8)
    for start in range(0, len(indices), chunk):
        idx = indices[start:start + chunk]
        out[start:start + len(idx)] = _render(idx, all_labels[idx], image_size, base)
    return out, all_labels[indices]


def _render(indices, labels_, size, base_seed):
    n = len(indices)
    # Per-example generators keep example i independent of which others are rendered.
    params64 = np.stack([_example_params(base_seed, int(i)) for i in indices])  # [n, P]
    noise_seed = params64[:, 10].astype(np.int64)
    params = params64.astype(np.float32)
    (cx, cy, radius, angle, shade, tex_f1, tex_a1, tex_f2, tex_a2, tex_mix) = params[:, :10].T
    bg_colours = params[:, 11:17].reshape(n, 2, 3)
    coords = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # [s, s]
    yy, xx = yy[None], xx[None]

    # Background: two sinusoidal gratings mixing two dull colours, plus noise.
    tau = np.float32(2 * np.pi)
    g1 = np.sin(tau * tex_f1[:, None, None] * (
        xx * np.cos(tex_a1)[:, None, None] + yy * np.sin(tex_a1)[:, None, None]))
    g2 = np.sin(tau * tex_f2[:, None, None] * (
        xx * np.cos(tex_a2)[:, None, None] + yy * np.sin(tex_a2)[:, None, None]))
    t = np.float32(0.5) + np.float32(0.25) * (g1 + tex_mix[:, None, None] * g2)
    t = np.clip(t, 0, 1)[..., None]
    image = bg_colours[:, None, None, 0] * (1 - t) + bg_colours[:, None, None, 1] * t

    # Shape mask in rotated, radius-normalised coordinates.
    du = (xx - cx[:, None, None]) / radius[:, None, None]
    dv = (yy - cy[:, None, None]) / radius[:, None, None]
    ca, sa = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = ca * du + sa * dv, -sa * du + ca * dv
    shape_id = labels_ % len(SHAPES)
    r2 = u * u + v * v
    masks = {
        0: r2 < 1.0,                                                     # circle
        1: np.maximum(np.abs(u), np.abs(v)) < 0.8,                       # square
        2: (v < 0.7) & (v > -0.9) & (np.abs(u) < (v + 0.9) * 0.6),         # triangle
        3: ((np.abs(u) < 0.3) & (np.abs(v) < 1.0))
           | ((np.abs(v) < 0.3) & (np.abs(u) < 1.0)),                     # cross
        4: (r2 < 1.0) & (r2 > 0.45),                                     # ring
    }
    mask = np.zeros((n, size, size), bool)
    for k, m in masks.items():
        sel = shape_id == k
        mask[sel] = m[sel]
    colour_table = np.array(list(COLOURS.values()), np.float32)
    colour = colour_table[labels_ // len(SHAPES)] * shade[:, None]  # [n, 3]
    image = np.where(mask[..., None], colour[:, None, None, :], image)

    noise = np.stack([np.random.default_rng(int(s)).normal(0, 12, (size, size, 3))
                      .astype(np.float32) for s in noise_seed])
    image += noise
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


def _example_params(base_seed, index):
    rng = np.random.default_rng(base_seed + [index])
    cx, cy = rng.uniform(0.35, 0.65, 2)
    radius = rng.uniform(0.2, 0.32)
    angle = rng.uniform(-0.3, 0.3)
    shade = rng.uniform(0.75, 1.1)
    tex = [rng.uniform(1, 6), rng.uniform(0, np.pi), rng.uniform(2, 10),
           rng.uniform(0, np.pi), rng.uniform(0, 1)]
    noise_seed = rng.integers(0, 2**31)
    # Two dull background colours: grey levels with a little tint.
    grey = rng.uniform(50, 190, (2, 1))
    bg = np.clip(grey + rng.uniform(-25, 25, (2, 3)), 0, 255).reshape(-1)
    return np.array([cx, cy, radius, angle, shade, *tex, noise_seed, *bg], np.float64)
