r"""Training and inference speed of our MobileNet on the active Keras backend (JAX,
TensorFlow or PyTorch: ``KERAS_BACKEND``), optionally beside timm's ``mobilenetv1_100``:

  KERAS_BACKEND=jax python -m mobilenet_tf.benchmarks.keras_backend [--settings=224:128] \
      [--steps=30] [--warmup=5] [--repeats=3] [--policies=float32,mixed_bfloat16,...] \
      [--torch_baseline]

Imports no TensorFlow unless it is the backend. Ours: ``mobilenet_v1(alpha=1.0,
num_classes=1000)``, RMSprop (lr 0.01; rho 0.9, momentum 0.9, epsilon 1.0 as slim's
MobileNet training), sparse categorical crossentropy, one synthetic batch already on the
device, timed through ``fit`` (steps queued), ``train_on_batch`` and
``predict_on_batch`` (both wait every step). timm, in this process on the same device:
channels_last, the same RMSprop, float32 / autocast bfloat16 / autocast float16 +
GradScaler for the three policies, ``torch.cuda.synchronize`` before each clock read.
Medians over ``--repeats`` of ``--steps`` steps after ``--warmup`` steps (compilation
happens there). docs/benchmarks.md (GPU) has the details and a run on an H200.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time

# JAX would otherwise take 75% of the GPU's memory at its first use, before torch runs.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from mobilenet_tf.benchmarks.settings import parse_settings  # noqa: E402
from mobilenet_tf.model.builder import mobilenet_v1  # noqa: E402

FLAGS = flags.FLAGS
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
TORCH_AUTOCAST = {"float32": None, "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
NUM_CLASSES = 1000


def define_flags():
    """The command line's flags, defined only when it runs (the tests import the
    benchmark modules together: defining them at import would clash)."""
    flags.DEFINE_string("settings", "224:128", "RESOLUTION:BATCH pairs, comma-separated.")
    flags.DEFINE_integer("steps", 30, "Timed steps per repeat.")
    flags.DEFINE_integer("warmup", 5, "Untimed steps first (compilation happens here).")
    flags.DEFINE_integer("repeats", 3, "Timed repeats per measurement (median reported).")
    flags.DEFINE_list("policies", list(POLICIES), "Keras dtype policies.")
    flags.DEFINE_bool("torch_baseline", False,
                      "Also time timm's mobilenetv1_100 in PyTorch on the same device.")


def check_policies(policies) -> list[str]:
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise ValueError(f"--policies={','.join(policies)!r} is not valid; "
                         f"give one or more of {list(POLICIES)}")
    return list(policies)


def timed(step, steps, warmup, repeats, sync=lambda: None) -> float:
    """Median seconds per call of ``step`` over ``repeats`` runs of ``steps`` calls."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def ours(res, batch, policy, steps, warmup, repeats) -> tuple[float, float, float]:
    """(fit, train_on_batch, predict_on_batch) images/s of our model under ``policy``."""
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = mobilenet_v1(input_shape=(res, res, 3), alpha=1.0, num_classes=NUM_CLASSES)
        model.compile(optimizer=keras.optimizers.RMSprop(
            0.01, rho=0.9, momentum=0.9, epsilon=1.0), loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x = keras.ops.convert_to_tensor(
            rng.standard_normal((batch, res, res, 3), dtype=np.float32))
        y = keras.ops.convert_to_tensor(rng.integers(0, NUM_CLASSES, batch, dtype=np.int32))

        def batches():  # the same on-device batch, forever (Keras wants a generator)
            while True:
                yield x, y

        def fit(n):
            model.fit(batches(), steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)

        fit(max(warmup, 1))
        fit_s = timed(lambda: fit(steps), 1, 0, repeats) / steps
        on_batch = timed(lambda: model.train_on_batch(x, y), steps, warmup, repeats)
        infer = timed(lambda: model.predict_on_batch(x), steps, warmup, repeats)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
    return batch / fit_s, batch / on_batch, batch / infer


def import_timm():
    """(torch, timm), or None with the reason printed (torchvision stubbed if broken)."""
    from mobilenet_tf.benchmarks import timm_train
    try:
        return timm_train.import_timm(stub_torchvision=True)
    except SystemExit:
        print("--torch_baseline: torch/timm not importable; timm side skipped", flush=True)
        return None


def timm_side(torch, timm, res, batch, policy, steps, warmup, repeats):
    """(training, inference) images/s of timm's mobilenetv1_100, as the module doc says."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = timm.create_model("mobilenetv1_100", pretrained=False, num_classes=NUM_CLASSES
                              ).to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, momentum=0.9, eps=1.0)
    name = TORCH_AUTOCAST[policy]
    dtype = getattr(torch, name) if name else None
    scaler = torch.amp.GradScaler(dev, enabled=name == "float16")
    x = torch.randn(batch, 3, res, res, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=dev)

    def autocast():
        return torch.autocast(dev, dtype=dtype, enabled=dtype is not None)

    def train():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def infer():
        with torch.inference_mode(), autocast():
            model(x)

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    t_train = timed(train, steps, warmup, repeats, sync)
    model.eval()
    return batch / t_train, batch / timed(infer, steps, warmup, repeats, sync)


def run(settings, policies, steps, warmup, repeats, torch_timm=None, log=print):
    """{(res, batch, policy): {"ours": (fit, train_on_batch, predict), "timm": (train,
    infer)}} in images/s."""
    results = {}
    for res, batch in settings:
        for policy in policies:
            row = results[(res, batch, policy)] = {}
            if torch_timm:  # first, before JAX's allocator holds memory of its own
                row["timm"] = timm_side(*torch_timm, res, batch, policy, steps, warmup,
                                        repeats)
                log(f"{res}/{batch} {policy} timm: {row['timm']}", flush=True)
            try:  # one failing policy (say, a backend without float16) must not end the run
                row["ours"] = ours(res, batch, policy, steps, warmup, repeats)
            except Exception as err:  # noqa: BLE001
                log(f"{res}/{batch} {policy} ours FAILED: {type(err).__name__}: {err}",
                    flush=True)
                continue
            log(f"{res}/{batch} {policy} ours: {row['ours']}", flush=True)
    return results


def _ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def table(results, backend=None) -> str:
    """Markdown: one row per side; ratios use fit (ours) and the training loop (timm)."""
    backend = backend or keras.backend.backend()
    lines = ["| resolution / batch | precision | backend | train, fit (img/s) | train, "
             "train_on_batch (img/s) | inference (img/s) | train vs timm | inference vs "
             "timm | train vs float32 | inference vs float32 |", "|---" * 10 + "|"]
    for (res, batch, policy), row in results.items():
        base = results.get((res, batch, "float32"), {})
        for side, name in (("ours", f"keras {backend}"), ("timm", "torch (timm)")):
            if side not in row:
                continue
            train, infer = row[side][0], row[side][-1]
            on_batch = f"{row[side][1]:.1f}" if side == "ours" else "-"
            timm = row.get("timm") if side == "ours" else None
            vs_timm = [_ratio(train, timm[0]), _ratio(infer, timm[-1])] if timm else ["-"] * 2
            b = base.get(side, (0, 0))
            lines.append(" | ".join([f"| {res} / {batch}", policy, name, f"{train:.1f}",
                                     on_batch, f"{infer:.1f}", *vs_timm, _ratio(train, b[0]),
                                     _ratio(infer, b[-1])]) + " |")
    return "\n".join(lines)


def describe(torch_timm) -> str:
    backend = keras.backend.backend()
    module = importlib.import_module(backend)
    text = f"Keras {keras.__version__}, backend {backend} {module.__version__}"
    if backend == "jax":
        text += (f", devices {module.devices()}, default_matmul_precision="
                 f"{module.config.jax_default_matmul_precision}")
    text += f"; TensorFlow imported: {'tensorflow' in sys.modules}"
    if torch_timm:
        torch, timm = torch_timm
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        text += (f"; torch {torch.__version__}, timm {timm.__version__} on {gpu} "
                 f"(cudnn.allow_tf32={torch.backends.cudnn.allow_tf32})")
    return text


def main(argv):
    del argv
    policies = check_policies(FLAGS.policies)
    settings = parse_settings(FLAGS.settings)
    torch_timm = import_timm() if FLAGS.torch_baseline else None
    print(describe(torch_timm), flush=True)
    results = run(settings, policies, FLAGS.steps, FLAGS.warmup, FLAGS.repeats, torch_timm)
    print(table(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
