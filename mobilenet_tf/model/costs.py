"""Counts mult-adds and parameters of a built model the way the paper does.

The paper (Sec. 3.2-3.3, Tables 1-2) counts the convolutions and the final fully
connected layer: a standard conv costs ``Dk*Dk*M*N*Df*Df`` mult-adds, a depthwise conv
``Dk*Dk*M*Df*Df``; batch norm, biases, ReLU and pooling cost nothing. Parameters are the
conv kernels and the fully connected weights; biases and batch-norm parameters are left out
(with them left out, Table 2's parameter shares come out to the paper's two decimals).
"""

from __future__ import annotations

import dataclasses

import keras

from mobilenet_tf.model import builder as model_lib, paper

# Layer kinds, in the order of Table 2.
KINDS = ("conv1x1", "dw3x3", "conv3x3", "fc")
KIND_TITLES = {
    "conv1x1": "Conv 1x1",
    "dw3x3": "Conv DW 3x3",
    "conv3x3": "Conv 3x3",
    "fc": "Fully Connected",
}


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str  # one of KINDS
    type_stride: str  # Table 1's "Type / Stride" column, e.g. "Conv dw / s2"
    filter_shape: str  # Table 1's "Filter Shape" column, e.g. "3x3x32 dw"
    input_size: str  # Table 1's "Input Size" column, e.g. "112x112x32"
    mult_adds: int
    params: int


@dataclasses.dataclass(frozen=True)
class Profile:
    layers: tuple[LayerCost, ...]

    @property
    def mult_adds(self) -> int:
        return sum(layer.mult_adds for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def breakdown(self) -> dict[str, dict[str, float]]:
        """Table 2: share of mult-adds and parameters per layer kind, in percent."""
        out = {}
        for kind in KINDS:
            chosen = [layer for layer in self.layers if layer.kind == kind]
            if chosen:
                out[kind] = {
                    "mult_adds": sum(c.mult_adds for c in chosen),
                    "params": sum(c.params for c in chosen),
                    "mult_adds_percent": 100.0 * sum(c.mult_adds for c in chosen)
                    / self.mult_adds,
                    "params_percent": 100.0 * sum(c.params for c in chosen) / self.params,
                }
        return out

    def to_dict(self) -> dict:
        return {
            "mult_adds": self.mult_adds,
            "params": self.params,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "breakdown": self.breakdown(),
        }


def _size(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def profile_model(model: keras.Model) -> Profile:
    """Mult-adds and parameters of every conv and fully connected layer of ``model``."""
    costs = []
    padded_from = None  # Table 1 lists a strided conv's input before Keras' zero padding
    for layer in model.layers:
        if isinstance(layer, keras.layers.ZeroPadding2D):
            padded_from = tuple(layer.input.shape[1:])
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                  keras.layers.Dense)):
            continue
        in_shape = padded_from or tuple(layer.input.shape[1:])
        padded_from = None
        out_shape = tuple(layer.output.shape[1:])
        kernel = tuple(layer.kernel.shape)
        if isinstance(layer, keras.layers.Dense):
            in_shape, out_shape = (1, 1) + in_shape, (1, 1) + out_shape
        out_pixels = int(out_shape[0]) * int(out_shape[1])
        stride = layer.strides[0] if hasattr(layer, "strides") else 1
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = kernel
            kind, type_name = "dw3x3", "Conv dw"
            filter_shape = f"{kh}x{kw}x{cin} dw" + (f" x{mult}" if mult != 1 else "")
            macs = out_pixels * kh * kw * cin * mult
            params = kh * kw * cin * mult
        else:
            if len(kernel) == 2:
                kernel = (1, 1) + kernel
            kh, kw, cin, cout = kernel
            is_fc = isinstance(layer, keras.layers.Dense) or (
                in_shape[0] == in_shape[1] == 1 and (kh, kw) == (1, 1)
                and layer is _last_conv(model))
            if is_fc:
                kind, type_name, filter_shape = "fc", "FC", f"{cin}x{cout}"
            else:
                kind = "conv1x1" if (kh, kw) == (1, 1) else "conv3x3"
                type_name, filter_shape = "Conv", f"{kh}x{kw}x{cin}x{cout}"
            macs = out_pixels * kh * kw * cin * cout
            params = kh * kw * cin * cout
        costs.append(LayerCost(layer.name, kind, f"{type_name} / s{stride}", filter_shape,
                               _size(in_shape), macs, params))
    return Profile(tuple(costs))


def _last_conv(model):
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    return convs[-1] if convs else None


def profile(alpha: float = 1.0, resolution=224, variant: str = "mobilenet",
            num_classes: int = 1000, depth_multiplier: int = 1) -> Profile:
    """Builds the model described by the arguments and profiles it."""
    model = model_lib.mobilenet_v1(input_shape=resolution, alpha=alpha, variant=variant,
                                   num_classes=num_classes,
                                   depth_multiplier=depth_multiplier)
    return profile_model(model)


def paper_comparison() -> list[dict]:
    """Tables 4-7 of the paper, recomputed from the builder, next to the paper's figures."""
    rows = []
    for row in paper.TABLE_ROWS:
        prof = profile(alpha=row.alpha, resolution=row.resolution, variant=row.variant)
        rows.append({
            "table": row.table, "model": row.model, "alpha": row.alpha,
            "resolution": row.resolution, "variant": row.variant,
            "paper_accuracy": row.accuracy,
            "paper_mult_adds_m": row.mult_adds_m, "mult_adds_m": prof.mult_adds / 1e6,
            "paper_params_m": row.params_m, "params_m": prof.params / 1e6,
        })
    return rows


def format_table1(prof: Profile) -> str:
    """The per-layer table in the shape of Table 1, plus mult-adds and params per layer."""
    lines = [f"{'Type / Stride':<14} {'Filter Shape':<18} {'Input Size':<14} "
             f"{'Mult-Adds':>13} {'Params':>11}"]
    for layer in prof.layers:
        lines.append(f"{layer.type_stride:<14} {layer.filter_shape:<18} "
                     f"{layer.input_size:<14} {layer.mult_adds:>13,} {layer.params:>11,}")
    lines.append(f"{'Total':<48} {prof.mult_adds:>13,} {prof.params:>11,}")
    return "\n".join(lines)


def format_table2(prof: Profile, paper_breakdown=None) -> str:
    """Table 2: resources per layer type (with the paper's figures when given)."""
    head = f"{'Type':<16} {'Mult-Adds':>10} {'Parameters':>11}"
    if paper_breakdown:
        head += f"   {'paper Mult-Adds':>15} {'paper Params':>12}"
    lines = [head]
    for kind, share in prof.breakdown().items():
        line = (f"{KIND_TITLES[kind]:<16} {share['mult_adds_percent']:>9.2f}% "
                f"{share['params_percent']:>10.2f}%")
        if paper_breakdown and kind in paper_breakdown:
            pm, pp = paper_breakdown[kind]
            line += f"   {pm:>14.2f}% {pp:>11.2f}%"
        lines.append(line)
    return "\n".join(lines)


def format_paper_tables(rows: list[dict]) -> str:
    lines = [f"{'Table':<6} {'Model':<30} {'Acc (paper)':>11} {'MAdds (M)':>10} "
             f"{'paper':>6} {'diff':>6} {'Params (M)':>10} {'paper':>6} {'diff':>6}"]
    for r in rows:
        lines.append(
            f"{r['table']:<6} {r['model']:<30} {r['paper_accuracy']:>10.1f}% "
            f"{r['mult_adds_m']:>10.1f} {r['paper_mult_adds_m']:>6g} "
            f"{r['mult_adds_m'] - r['paper_mult_adds_m']:>+6.1f} "
            f"{r['params_m']:>10.2f} {r['paper_params_m']:>6g} "
            f"{r['params_m'] - r['paper_params_m']:>+6.2f}")
    return "\n".join(lines)
