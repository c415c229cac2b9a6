"""The images training writes for TensorBoard, rendered with Pillow: a labelled grid of
augmented training inputs and a confusion matrix with axis titles and class names.

Both are drawn for TensorBoard's image cards (about 400-500 px wide by default): about
560 px wide with 20-22 px text (12-15 px above 12 classes), so that the labels stay
readable (about 12 px) when the card scales the image down. Class names are display names (``n01440764`` -> ``tench``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mobilenet_tf.data import MEAN, STD
from mobilenet_tf.data.labels import display_names

WIDTH = 560  # px; TensorBoard shows images about 350-500 px wide
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
    caption = 28
    fnt = font(20)
    grid = Image.new("RGB", (columns * tile, rows * (tile + caption)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for i, (img, name) in enumerate(zip(images, names)):
        r, c = divmod(i, columns)
        x, y = c * tile, r * (tile + caption)
        grid.paste(Image.fromarray(img).resize((tile - 4, tile - 4), Image.BILINEAR),
                   (x + 2, y + 2))
        draw.text((x + 4, y + tile + 1), _fit(name, fnt, tile - 8), fill="black", font=fnt)
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
    """Rows: true class, columns: predicted class; each row normalized (blue: correct,
    red: confusions; counts drawn when the cells are large enough). [1,H,W,3] uint8."""
    matrix = np.asarray(matrix, np.float64)
    shown = matrix_classes(matrix, limit)
    sub = matrix[np.ix_(shown, shown)]
    n = len(shown)
    names = display_names([class_names[i] for i in shown])
    label_px = 20 if n <= 12 else 15 if n <= 20 else 12
    fnt, title_fnt = font(label_px), font(22)
    margin = min(180, int(max(fnt.getlength(s) for s in names)) + 10)
    top = 38  # title line
    cell = max(8, (WIDTH - margin - 32) // n)
    size_x = 32 + margin + n * cell + 4
    size_y = top + margin + n * cell + 4
    img = Image.new("RGB", (size_x, size_y), BACKGROUND)
    draw = ImageDraw.Draw(img)
    title = "predicted"
    if n < matrix.shape[0]:
        title = f"predicted ({n} of {matrix.shape[0]} classes: the most confused)"
    x0, y0 = 32 + margin, top + margin
    draw.text((x0, 6), _fit(title, title_fnt, size_x - x0 - 4), fill="black", font=title_fnt)
    true_title = Image.new("RGB", (n * cell, 26), BACKGROUND)
    ImageDraw.Draw(true_title).text((n * cell // 2, 13), "true", fill="black",
                                    font=title_fnt, anchor="mm")
    img.paste(true_title.rotate(90, expand=True), (2, y0))
    norm = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    count_fnt = font(max(10, min(18, cell // 2 - 2)))
    for i in range(n):
        draw.text((32, y0 + i * cell + (cell - label_px) // 2),
                  _fit(names[i], fnt, margin - 6), fill="black", font=fnt)
        for j in range(n):
            v = norm[i, j]
            shade = int(255 * (1 - v))
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x, y = x0 + j * cell, y0 + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=color, outline=(200,) * 3)
            if cell >= 26 and sub[i, j]:
                draw.text((x + 3, y + (cell - count_fnt.size) // 2), str(int(sub[i, j])),
                          fill="black" if v < 0.6 else "white", font=count_fnt)
    for j in range(n):  # column labels, written upwards
        label = Image.new("RGB", (margin - 4, label_px + 4), BACKGROUND)
        ImageDraw.Draw(label).text((2, 0), _fit(names[j], fnt, margin - 10), fill="black",
                                   font=fnt)
        img.paste(label.rotate(90, expand=True),
                  (x0 + j * cell + (cell - label_px - 4) // 2, top + 2))
    return np.asarray(img)[None]
