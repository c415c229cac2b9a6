"""The cost counter (model/costs.py) reproduces the paper's tables. Every expected figure
below is copied from the paper's text (Howard et al. 2017, arXiv:1704.04861), not from
our own output."""

import json
import subprocess
import sys

import pytest

from mobilenet_tf.model import costs, paper

# Table 1 of the paper for 1.0 MobileNet-224: (Type / Stride, Filter Shape, Input Size).
TABLE_1 = [
    ("Conv / s2", "3x3x3x32", "224x224x3"),
    ("Conv dw / s1", "3x3x32 dw", "112x112x32"),
    ("Conv / s1", "1x1x32x64", "112x112x32"),
    ("Conv dw / s2", "3x3x64 dw", "112x112x64"),
    ("Conv / s1", "1x1x64x128", "56x56x64"),
    ("Conv dw / s1", "3x3x128 dw", "56x56x128"),
    ("Conv / s1", "1x1x128x128", "56x56x128"),
    ("Conv dw / s2", "3x3x128 dw", "56x56x128"),
    ("Conv / s1", "1x1x128x256", "28x28x128"),
    ("Conv dw / s1", "3x3x256 dw", "28x28x256"),
    ("Conv / s1", "1x1x256x256", "28x28x256"),
    ("Conv dw / s2", "3x3x256 dw", "28x28x256"),
    ("Conv / s1", "1x1x256x512", "14x14x256"),
    *[("Conv dw / s1", "3x3x512 dw", "14x14x512"),
      ("Conv / s1", "1x1x512x512", "14x14x512")] * 5,
    ("Conv dw / s2", "3x3x512 dw", "14x14x512"),
    ("Conv / s1", "1x1x512x1024", "7x7x512"),
    # The paper prints "Conv dw / s2" here, but the input and output are both 7x7
    # (a well-known typo): the stride is 1, as in every implementation.
    ("Conv dw / s1", "3x3x1024 dw", "7x7x1024"),
    ("Conv / s1", "1x1x1024x1024", "7x7x1024"),
    ("FC / s1", "1024x1000", "1x1x1024"),
]

# Table 2 (percent of mult-adds, percent of parameters). The paper prints 1.19% for the
# first 3x3 conv, but its four mult-add shares then sum to 99.29%; 1.91% (digits swapped)
# makes them sum to 100.01%, and 1.91% is what 10.84M of 568.7M is.
TABLE_2 = {"conv1x1": (94.86, 74.59), "dw3x3": (3.06, 1.06), "conv3x3": (1.91, 0.02),
           "fc": (0.18, 24.33)}


def _last_digit_unit(value: float) -> float:
    text = repr(float(value)).rstrip("0").rstrip(".")
    return 10.0 ** -len(text.split(".")[1]) if "." in text else 1.0


def assert_matches_paper(ours_m: float, paper_m: float):
    """Agreement to the paper's printing: within one unit of its last printed digit
    (the paper rounds some rows and truncates others: 568.7 -> 569 but 290.7 -> 290),
    or within 0.05% for the 4-digit Table 4 figure (4867.3 vs 4866)."""
    unit = _last_digit_unit(paper_m)
    assert abs(ours_m - paper_m) <= unit or abs(ours_m - paper_m) <= 5e-4 * paper_m, (
        ours_m, paper_m)


def test_table_1_layer_by_layer():
    prof = costs.profile(alpha=1.0, resolution=224)
    assert [(l.type_stride, l.filter_shape, l.input_size) for l in prof.layers] == TABLE_1


def test_table_2_breakdown():
    shares = costs.profile().breakdown()
    for kind, (mult_adds, params) in TABLE_2.items():
        assert round(shares[kind]["mult_adds_percent"], 2) == mult_adds, kind
        assert round(shares[kind]["params_percent"], 2) == params, kind
    # The transcription in paper.py keeps what the paper prints.
    assert paper.TABLE2["conv3x3"] == (1.19, 0.02)


@pytest.mark.parametrize("table, alpha, resolution, variant, mult_adds_m, params_m", [
    ("4", 1.0, 224, "conv", 4866, 29.3),
    ("4", 1.0, 224, "mobilenet", 569, 4.2),
    ("5", 0.75, 224, "mobilenet", 325, 2.6),
    ("5", 1.0, 224, "shallow", 307, 2.9),
    ("6", 0.5, 224, "mobilenet", 149, 1.3),
    ("6", 0.25, 224, "mobilenet", 41, 0.5),
    ("7", 1.0, 192, "mobilenet", 418, 4.2),
    ("7", 1.0, 160, "mobilenet", 290, 4.2),
    ("7", 1.0, 128, "mobilenet", 186, 4.2),
])
def test_tables_4_to_7(table, alpha, resolution, variant, mult_adds_m, params_m):
    prof = costs.profile(alpha=alpha, resolution=resolution, variant=variant)
    assert_matches_paper(prof.mult_adds / 1e6, mult_adds_m)
    assert round(prof.params / 1e6, 1) == params_m  # the paper prints one decimal


# Table 6 (alpha at 224): mult-adds (M), params (M).
TABLE_6 = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
@pytest.mark.parametrize("resolution", [224, 192, 160, 128])
def test_every_alpha_and_resolution(alpha, resolution):
    """The paper gives the 16 combinations through its rules: the resolution multiplier
    rho = resolution/224 leaves parameters unchanged and scales the convolutions' cost by
    rho^2 (Sec. 3.3, Table 7); the fully connected layer does not scale."""
    prof = costs.profile(alpha=alpha, resolution=resolution)
    paper_madds, paper_params = TABLE_6[alpha]
    assert round(prof.params / 1e6, 1) == paper_params
    fc = next(l for l in prof.layers if l.kind == "fc").mult_adds
    rho2 = (resolution / 224) ** 2
    expected = (paper_madds - fc / 1e6) * rho2 + fc / 1e6
    # The paper's figure carries +-1M of printing error, scaled by rho^2.
    assert abs(prof.mult_adds / 1e6 - expected) <= 1.0
    # And exactly, from our own 224 count (spatial sizes are multiples of 32):
    base = costs.profile(alpha=alpha, resolution=224).mult_adds
    assert prof.mult_adds == round((base - fc) * rho2) + fc


def test_equation_7_per_layer():
    """Each separable block costs Dk*Dk*aM*rDf*rDf + aM*aN*rDf*rDf (the paper's eq. 7)."""
    prof = costs.profile(alpha=0.75, resolution=160)
    layers = [l for l in prof.layers if l.kind in ("dw3x3", "conv1x1")]
    for dw, pw in zip(layers[0::2], layers[1::2]):
        m = int(dw.input_size.split("x")[2])
        n = int(pw.filter_shape.split("x")[3])
        df_out = int(pw.input_size.split("x")[0])
        assert dw.mult_adds + pw.mult_adds == 3 * 3 * m * df_out**2 + m * n * df_out**2


def test_cli_json_and_paper_tables():
    out = subprocess.run(
        [sys.executable, "-m", "mobilenet_tf.profile", "--alpha=0.5", "--resolution=160",
         "--json", "--paper_tables"], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert isinstance(result["mult_adds"], int) and isinstance(result["params"], int)
    library = costs.profile(alpha=0.5, resolution=160)
    assert (result["mult_adds"], result["params"]) == (library.mult_adds, library.params)
    assert len(result["layers"]) == 28
    assert {r["table"] for r in result["paper_tables"]} == {"4", "5", "6", "7"}


def test_cli_text_and_bad_flag():
    out = subprocess.run([sys.executable, "-m", "mobilenet_tf.profile", "--paper_tables"],
                         capture_output=True, text=True, check=True).stdout
    assert "Table 1" in out and "Table 2" in out and "Conv MobileNet" in out
    bad = subprocess.run([sys.executable, "-m", "mobilenet_tf.profile", "--alpha=-1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "alpha" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "mobilenet_tf.profile", "--resolution=big"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--resolution" in bad.stderr
