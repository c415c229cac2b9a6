r"""timm's ``mobilenetv1_100`` (PyTorch) training throughput, one measurement.

Run by ``mobilenet_tf.benchmarks.training`` in a subprocess with the Python of an
environment that has torch and timm (``--timm_python``), so that the TensorFlow
environment needs neither; it imports nothing from mobilenet_tf (run it by file path;
``$TIMM_VENV`` is the torch/timm environment of docs/benchmarks.md, "Commands"):

  $TIMM_VENV/bin/python mobilenet_tf/benchmarks/timm_train.py \
      --resolution=128 --batch_size=64 --steps=30 --warmup=10

Prints one JSON line: {"wall_images_per_s", "cpu_images_per_s", "torch", "timm",
"threads"}. Same task as the TensorFlow sides: random normalized images (a fixed set of 8
batches, cycled), 10 classes, RMSprop (lr 0.01, rho 0.9, momentum 0.9, eps 1.0),
cross-entropy with label smoothing 0.1, ``model.train()``, float32, channels_last
memory format by default (faster for PyTorch's CPU convolutions than its default NCHW;
``--channels_last=0`` for NCHW). Exit status 3 when torch or timm cannot be imported.

timm imports torchvision (for ``FrozenBatchNorm2d`` and its data module), and PyPI's
torchvision wheels need PyPI's CUDA torch build. With a CPU-only torch and no torchvision,
``--stub_torchvision`` (on by default) lets those imports resolve to empty placeholders;
nothing in ``mobilenetv1_100``'s forward or backward pass uses torchvision.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import time
import types


class _Placeholder(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_timm(stub_torchvision: bool):
    try:
        import torch
    except ImportError as err:
        print(f"torch is not installed in {sys.executable}: {err}", file=sys.stderr)
        sys.exit(3)
    if stub_torchvision:
        try:
            import torchvision  # noqa: F401
        except Exception:  # missing, or a CUDA build that cannot load with CPU torch
            for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
                del sys.modules[name]
            sys.meta_path.insert(0, _TorchvisionStub())
    try:
        import timm
    except ImportError as err:
        print(f"timm is not importable in {sys.executable}: {err}", file=sys.stderr)
        sys.exit(3)
    return torch, timm


def measure(args) -> dict:
    torch, timm = import_timm(args.stub_torchvision)
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv1_100", pretrained=False,
                              num_classes=args.num_classes)
    model.train()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, momentum=0.9, eps=1.0)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(0)
    r, b = args.resolution, args.batch_size
    batches = [((torch.rand(b, 3, r, r, generator=gen) * 2 - 1).to(memory_format=layout),
                torch.randint(0, args.num_classes, (b,), generator=gen)) for _ in range(8)]

    def step(i):
        images, labels = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        loss = step(i)
    float(loss.detach())  # waits for the last step (a no-op on CPU)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_images_per_s": args.steps * b / wall,
            "cpu_images_per_s": args.steps * b / cpu,
            "torch": torch.__version__, "timm": timm.__version__,
            "threads": torch.get_num_threads(),
            "layout": "channels_last" if args.channels_last else "nchw"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--stub_torchvision", type=int, default=1, choices=(0, 1))
    p.add_argument("--channels_last", type=int, default=1, choices=(0, 1))
    args = p.parse_args(argv)
    print(json.dumps(measure(args)), flush=True)


if __name__ == "__main__":
    main()
