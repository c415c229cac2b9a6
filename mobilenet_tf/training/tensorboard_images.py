"""The images training writes for TensorBoard, rendered with Pillow: a labelled grid of
augmented training inputs and a confusion matrix with class names.

Both are drawn for the Time Series image card, which scales an image to fit a box of
about 300 x 210 px (a card beside a scalar card, window 1400 px wide): small images
(about 300 px wide, at most about 250 px tall for up to 10 classes) with 15-18 px text,
so that the text stays about 13 px or more on the card. Class names are display names
(``n01440764`` -> ``tench``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mobilenet_tf.data import MEAN, STD
from mobilenet_tf.data.labels import display_names

WIDTH = 300  # px: the grid's width, about the card's
MATRIX_SPAN = 200  # px: the matrix cells' side for up to 10 classes (larger cells fewer)
CAPTION = 22  # px: a grid tile's caption line (16 px text)
MAX_MATRIX_CLASSES = 30  # more classes: the ones with the most confusions
BACKGROUND = (255, 255, 255)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in scalable font (Pillow >= 10.1) at ``size`` px."""
    return ImageFont.load_default(size=size)


def _fit(text: str, fnt, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` px."""
    if fnt.getlength(text) <= width:
        return text
    while text and fnt.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."


# ------------------------------------------------------------------ image grid
def image_grid(images, labels, class_names, columns: int = 3) -> np.ndarray:
    """Normalized images [n,h,w,3] (``(x - MEAN) / STD``) with their labels (int or one-hot
    / mixed targets: the largest entry) -> one uint8 image [1,H,W,3], ``columns`` tiles a
    row, each tile scaled to ``WIDTH / columns`` px and captioned with its class name."""
    images = np.clip(np.asarray(images, np.float32) * STD + MEAN, 0, 255).astype(np.uint8)
    labels = np.asarray(labels)
    ids = labels.argmax(-1) if labels.ndim == 2 else labels.reshape(-1)
    names = display_names([class_names[int(i)] for i in ids])
    n = len(images)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    tile = WIDTH // columns
    caption = CAPTION
    fnt = font(CAPTION - 6)
    grid = Image.new("RGB", (columns * tile, rows * (tile + caption)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for i, (img, name) in enumerate(zip(images, names)):
        r, c = divmod(i, columns)
        x, y = c * tile, r * (tile + caption)
        grid.paste(Image.fromarray(img).resize((tile - 4, tile - 4), Image.BILINEAR),
                   (x + 2, y + 2))
        draw.text((x + 3, y + tile), _fit(name, fnt, tile - 4), fill="black", font=fnt)
    return np.asarray(grid)[None]


# ------------------------------------------------------------ confusion matrix
def matrix_classes(matrix: np.ndarray, limit: int = MAX_MATRIX_CLASSES) -> np.ndarray:
    """The class indices a confusion matrix image shows: all when there are at most
    ``limit``, else the ``limit`` classes with the most confusions (wrong predictions of
    that class plus wrong predictions as that class), in label order."""
    n = matrix.shape[0]
    if n <= limit:
        return np.arange(n)
    off = matrix - np.diag(np.diag(matrix))
    score = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-score, kind="stable")[:limit])


def confusion_matrix_image(matrix, class_names, limit: int = MAX_MATRIX_CLASSES) -> np.ndarray:
    """Rows: true class (``i name``), columns: predicted class (``i``); each row normalized
    (blue: correct, red: confusions; counts drawn when the cells are large enough).
    [1,H,W,3] uint8, about 300 x 250 px up to 10 classes."""
    matrix = np.asarray(matrix, np.float64)
    shown = matrix_classes(matrix, limit)
    sub = matrix[np.ix_(shown, shown)]
    n = len(shown)
    names = [f"{i} {name}" for i, name in
             enumerate(display_names([class_names[i] for i in shown]))]
    cell = max(14, min(60, MATRIX_SPAN // n))
    label_px = max(11, min(18, cell - 2))
    fnt, title_fnt = font(label_px), font(16)
    margin = min(160, int(max(fnt.getlength(s) for s in names)) + 8)
    titles = ["rows: true, columns: predicted"]
    if n < matrix.shape[0]:
        titles.append(f"{n} of {matrix.shape[0]} classes: the most confused")
    x0, y0 = margin, 22 * len(titles) + label_px + 6
    size_x = max(x0 + n * cell + 4, 240)
    img = Image.new("RGB", (size_x, y0 + n * cell + 4), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for k, title in enumerate(titles):
        draw.text((4, 3 + 22 * k), _fit(title, title_fnt, size_x - 8), fill="black",
                  font=title_fnt)
    norm = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    count_fnt = font(max(10, min(18, cell // 2)))
    for i in range(n):
        draw.text((4, y0 + i * cell + cell // 2), _fit(names[i], fnt, margin - 8),
                  fill="black", font=fnt, anchor="lm")
        draw.text((x0 + i * cell + cell // 2, y0 - 3), str(i), fill="black",
                  font=font(min(label_px, int(cell * 0.7))), anchor="mb")
        for j in range(n):
            v = norm[i, j]
            shade = int(255 * (1 - v))
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x, y = x0 + j * cell, y0 + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=color, outline=(200,) * 3)
            if cell >= 30 and sub[i, j]:
                draw.text((x + cell // 2, y + cell // 2), str(int(sub[i, j])),
                          fill="black" if v < 0.6 else "white", font=count_fnt, anchor="mm")
    return np.asarray(img)[None]
