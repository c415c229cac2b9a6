"""Write ImageNet MobileNet-V1 weights to a file that ``--initial_weights=FILE`` takes.

    python -m mobilenet_tf.weights --alpha=0.75 --resolution=224 imagenet_0.75_224.weights.h5
    python -m mobilenet_tf.weights --from_tflite=mobilenet_v1_0.75_224.tflite OUT.weights.h5

From Keras' published files (``keras.utils.get_file``: the Keras cache
``$KERAS_HOME/models/``, default ~/.keras/models/, or a download), with their 1000-class
classifier (what ``--classifier_init=source`` maps from) or without it
(``--noinclude_top``, for ``--classifier_init=zeros``). Or converted from one of Google's
MobileNet-V1 TFLite models (``mobilenet_v1_{alpha}_{res}.tflite``, float or quantized,
1001 classes; alpha and resolution are read from the file): their batch norm is folded
into the convolutions, so train on them with ``--freeze_bn`` (the fine-tuning recipe does).
Run it where the files can be downloaded and copy OUT to the machine that trains.
"""

import os

from absl import flags

from mobilenet_tf import cli

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)

_ALPHA = cli.define("model", flags.DEFINE_float, "alpha", 1.0,
                    f"Width multiplier of Keras' file: one of {list(ALPHAS)}.")
_RESOLUTION = cli.define("model", flags.DEFINE_integer, "resolution", 224,
                         f"Input resolution Keras' file was trained at: one of "
                         f"{list(RESOLUTIONS)}.")
_INCLUDE_TOP = cli.define("model", flags.DEFINE_bool, "include_top", True,
                          "Keep the ImageNet classifier (--classifier_init=source needs it; "
                          "--noinclude_top: Keras' smaller no-top file).")
_FROM_TFLITE = cli.define("data", flags.DEFINE_string, "from_tflite", None,
                          "Convert this MobileNet-V1 .tflite (e.g. Google's "
                          "mobilenet_v1_0.75_224.tflite) instead of Keras' file; alpha and "
                          "resolution come from it.")


def main(argv):
    if len(argv) != 2:
        raise cli.UsageError("give one OUT file (NAME.weights.h5) to write"
                             if len(argv) < 2 else
                             f"unexpected arguments: {' '.join(argv[2:])}")
    out = argv[1]
    if not out.endswith(".weights.h5"):
        raise cli.UsageError(f"OUT={out!r} must end in .weights.h5 (Keras' weights format)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise cli.UsageError(f"OUT={out!r}: the folder {os.path.dirname(out)!r} does not exist")
    source = _FROM_TFLITE.value
    if source is not None and not os.path.isfile(source):
        raise cli.UsageError(f"--from_tflite={source!r}: no such file")
    if source is None:
        for flag, valid in ((_ALPHA, ALPHAS), (_RESOLUTION, RESOLUTIONS)):
            if flag.value not in valid:
                raise cli.UsageError(f"--{flag.name}={flag.value} is not valid: Keras "
                                     f"publishes {list(valid)}")
    pretrained = cli.load("mobilenet_tf.model.pretrained")
    try:
        if source is None:
            model, report = pretrained.imagenet_model(_ALPHA.value, _RESOLUTION.value,
                                                      _INCLUDE_TOP.value)
            origin = report.path
        else:
            with cli.quiet_native_stderr():
                model = pretrained.tflite_model(source, _INCLUDE_TOP.value)
            origin = source
    except ValueError as err:  # a file that cannot be had or read: one line naming it
        raise cli.UsageError(str(err)) from None
    temporary = os.path.join(os.path.dirname(os.path.abspath(out)),
                             f".{os.path.basename(out)}.{os.getpid()}.weights.h5")
    try:
        model.save_weights(temporary)
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    alpha = model.get_layer("conv1").kernel.shape[-1] / 32
    top = (f"{model.output_shape[-1]}-class classifier" if _INCLUDE_TOP.value
           else "no classifier")
    print(f"Wrote {out} from {origin}: MobileNet-V1 alpha {alpha:g}, {top}. Train with "
          f"--alpha={alpha:g} --initial_weights={out}"
          + ("" if _INCLUDE_TOP.value else " --classifier_init=zeros"))


if __name__ == "__main__":
    cli.run(main, __doc__)
