"""Print the mult-adds and parameters of a MobileNet, counted as the paper counts them.

    python -m mobilenet_tf.profile --alpha=0.75 --resolution=192
    python -m mobilenet_tf.profile --paper_tables
    python -m mobilenet_tf.profile --json

In Python the same counts come from the function ``mobilenet_tf.profile`` (defined in
``mobilenet_tf.model.costs``). Neither is TensorFlow's profiler, which records training
steps into TensorBoard (``python -m mobilenet_tf.train --profile_steps``).
"""

# This module is the command only: it is run as ``python -m mobilenet_tf.profile`` and
# imported by nothing, since ``import mobilenet_tf.profile`` would bind the package's
# attribute ``profile`` to this module and hide the function of that name.

import json

from absl import flags

from mobilenet_tf import cli
from mobilenet_tf.model.architecture import MIN_RESOLUTION, VARIANTS

_ALPHA = cli.define("model", flags.DEFINE_float, "alpha", 1.0,
                    "Width multiplier (> 0; paper: 1.0, 0.75, 0.5, 0.25).")
_RESOLUTION = cli.define("model", flags.DEFINE_string, "resolution", "224",
                         "Input resolution: one int (square) or HxW, e.g. 224 or 160x240; "
                         f"each side >= {MIN_RESOLUTION}.")
_VARIANT = cli.define("model", flags.DEFINE_enum, "variant", "mobilenet", list(VARIANTS),
                      "mobilenet, conv (Table 4 baseline: full convolutions) or shallow "
                      "(Table 5: without the five 14x14x512 blocks).")
_NUM_CLASSES = cli.define("model", flags.DEFINE_integer, "num_classes", 1000,
                          "Classifier outputs (>= 1).")
_DEPTH_MULTIPLIER = cli.define("model", flags.DEFINE_integer, "depth_multiplier", 1,
                               "Channel multiplier of the depthwise convs (>= 1).")
_JSON = cli.define("output", flags.DEFINE_bool, "json", False,
                   "Print one JSON object (mult_adds, params, layers, breakdown) instead "
                   "of tables.")
_PAPER_TABLES = cli.define("output", flags.DEFINE_bool, "paper_tables", False,
                           "Also print Tables 4-7 recomputed next to the paper's figures.")


def parse_resolution(text: str):
    """'224' -> 224, '160x240' -> (160, 240, 3); raises ValueError naming --resolution."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise ValueError(f"--resolution={text!r} is not valid; use one int (224) or HxW "
                         "(160x240)")
    if min(parts) < MIN_RESOLUTION:
        raise ValueError(f"--resolution={text!r} is not valid: each side must be >= "
                         f"{MIN_RESOLUTION}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1], 3)


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}; options are "
                             "--flags")
    try:
        resolution = parse_resolution(_RESOLUTION.value)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    if _ALPHA.value <= 0:
        raise cli.UsageError(f"--alpha={_ALPHA.value} must be > 0 (paper: 1.0, 0.75, 0.5, "
                             "0.25)")
    for flag in (_NUM_CLASSES, _DEPTH_MULTIPLIER):
        if flag.value < 1:
            raise cli.UsageError(f"--{flag.name}={flag.value} must be >= 1")
    costs = cli.load("mobilenet_tf.model.costs")
    try:
        prof = costs.profile(alpha=_ALPHA.value, resolution=resolution,
                             variant=_VARIANT.value, num_classes=_NUM_CLASSES.value,
                             depth_multiplier=_DEPTH_MULTIPLIER.value)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    rows = costs.paper_comparison() if _PAPER_TABLES.value else None
    if _JSON.value:
        out = prof.to_dict()
        if rows is not None:
            out["paper_tables"] = rows
        print(json.dumps(out, indent=1))
        return
    _print_tables(costs, prof, resolution, rows)


def _print_tables(costs, prof, resolution, rows) -> None:
    """The text output: Tables 1 and 2 for the model, then Tables 4-7 when asked."""
    from mobilenet_tf.model import paper

    print(f"MobileNet variant={_VARIANT.value} alpha={_ALPHA.value} "
          f"resolution={_RESOLUTION.value} num_classes={_NUM_CLASSES.value} "
          f"depth_multiplier={_DEPTH_MULTIPLIER.value}\n")
    print("Table 1 (per layer):")
    print(costs.format_table1(prof))
    default = (_ALPHA.value == 1.0 and _VARIANT.value == "mobilenet"
               and resolution in (224, (224, 224, 3))
               and _NUM_CLASSES.value == 1000 and _DEPTH_MULTIPLIER.value == 1)
    print("\nTable 2 (resources per layer type):")
    print(costs.format_table2(prof, paper.TABLE2 if default else None))
    print(f"\nTotal: {prof.mult_adds / 1e6:.1f} million mult-adds, "
          f"{prof.params / 1e6:.2f} million parameters")
    if rows is not None:
        print("\nTables 4-7 of the paper, recomputed from the builder:")
        print(costs.format_paper_tables(rows))


if __name__ == "__main__":
    cli.run(main, __doc__)
