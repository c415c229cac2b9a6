"""Figures transcribed from the paper's text (Howard et al. 2017, arXiv:1704.04861v1).

These are the published numbers that the cost counter (``costs.py``) is compared with;
nothing here is computed. Mult-adds are in millions and parameters in millions, rounded
as printed.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TableRow:
    table: str  # "4", "5", "6" or "7"
    model: str  # the row's name in the paper
    alpha: float
    resolution: int
    variant: str
    accuracy: float  # ImageNet top-1, percent
    mult_adds_m: float
    params_m: float


TABLE_ROWS = (
    # Table 4: depthwise separable vs full convolution MobileNet.
    TableRow("4", "Conv MobileNet", 1.0, 224, "conv", 71.7, 4866, 29.3),
    TableRow("4", "MobileNet", 1.0, 224, "mobilenet", 70.6, 569, 4.2),
    # Table 5: narrow vs shallow MobileNet.
    TableRow("5", "0.75 MobileNet", 0.75, 224, "mobilenet", 68.4, 325, 2.6),
    TableRow("5", "Shallow MobileNet", 1.0, 224, "shallow", 65.3, 307, 2.9),
    # Table 6: MobileNet width multiplier.
    TableRow("6", "1.0 MobileNet-224", 1.0, 224, "mobilenet", 70.6, 569, 4.2),
    TableRow("6", "0.75 MobileNet-224", 0.75, 224, "mobilenet", 68.4, 325, 2.6),
    TableRow("6", "0.5 MobileNet-224", 0.5, 224, "mobilenet", 63.7, 149, 1.3),
    TableRow("6", "0.25 MobileNet-224", 0.25, 224, "mobilenet", 50.6, 41, 0.5),
    # Table 7: MobileNet resolution.
    TableRow("7", "1.0 MobileNet-224", 1.0, 224, "mobilenet", 70.6, 569, 4.2),
    TableRow("7", "1.0 MobileNet-192", 1.0, 192, "mobilenet", 69.1, 418, 4.2),
    TableRow("7", "1.0 MobileNet-160", 1.0, 160, "mobilenet", 67.2, 290, 4.2),
    TableRow("7", "1.0 MobileNet-128", 1.0, 128, "mobilenet", 64.4, 186, 4.2),
)

# Table 2: resources per layer type for 1.0 MobileNet-224, (mult-adds %, parameters %).
TABLE2 = {
    "conv1x1": (94.86, 74.59),
    "dw3x3": (3.06, 1.06),
    "conv3x3": (1.19, 0.02),
    "fc": (0.18, 24.33),
}
