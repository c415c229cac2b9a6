"""Tiny in-memory inputs for the trainer tests, and a command line that trains on them.

The inputs implement :class:`mobilenet_tf.data.interface.Input`, the interface of what
``data.build_input`` returns, so the trainer runs on them without reading files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from mobilenet_tf.data.interface import Input, NoBadImages


@dataclasses.dataclass
class ArrayInput(Input):
    """A learnable toy task: class k = a bright square in one of k quadrant-ish spots."""

    images: np.ndarray  # float32 [n,h,w,3] in [-1,1]
    labels: np.ndarray  # int [n]
    class_names: list
    training: bool
    global_batch_size: int
    seed: int = 0
    nan_after_batches: int = -1  # training: images become NaN from this batch on
    bad_images: NoBadImages = dataclasses.field(default_factory=NoBadImages)

    @property
    def num_examples(self):
        return len(self.labels)

    def input_fn(self, ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(self.global_batch_size)
        ds = tf.data.Dataset.from_tensor_slices((self.images, self.labels.astype(np.int32)))
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        n = len(self.class_names)
        if self.training:
            ds = ds.repeat().shuffle(256, seed=self.seed)
            ds = ds.map(lambda x, y: (x, tf.one_hot(y, n)))
            ds = ds.batch(per_replica, drop_remainder=True)
            if self.nan_after_batches >= 0:
                first_bad = self.nan_after_batches
                ds = ds.enumerate().map(lambda i, xy: (
                    tf.where(i >= first_bad, xy[0] * np.nan, xy[0]), xy[1]))
            return ds.prefetch(2)
        return ds.batch(per_replica).prefetch(2)


def toy_task(n=256, size=32, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.uniform(-1, -0.5, (n, size, size, 3)).astype(np.float32)
    half = size // 2
    for i, y in enumerate(labels):
        r, c = divmod(int(y) % 4, 2)
        images[i, r * half:(r + 1) * half, c * half:(c + 1) * half, int(y) % 3] = 1.0
    return images, labels


def toy_inputs(batch_size=16, n_train=256, n_eval=64, size=32, num_classes=4, seed=0):
    names = [f"class_{i}" for i in range(num_classes)]
    xt, yt = toy_task(n_train, size, num_classes, seed)
    xe, ye = toy_task(n_eval, size, num_classes, seed + 1)
    return (ArrayInput(xt, yt, names, True, batch_size, seed),
            ArrayInput(xe, ye, names, False, batch_size, seed))


def main():
    """Command line for subprocess tests: train on the toy task with a JSON TrainConfig.

    python tests/train_helpers.py WORKDIR '{"epochs": 2, ...}' [--logical_cpus=2]
        [--weights_out=F.npz] [--history_out=F.json] [--nan_after_batches=N]
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("config")
    parser.add_argument("--logical_cpus", type=int, default=0)
    parser.add_argument("--weights_out", default="")
    parser.add_argument("--history_out", default="")
    parser.add_argument("--nan_after_batches", type=int, default=-1)
    parser.add_argument("--toy", default="{}", help="JSON kwargs of toy_inputs")
    args = parser.parse_args()
    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    from mobilenet_tf.rundir.errors import RunError
    from mobilenet_tf.training.config import TrainConfig
    from mobilenet_tf.training.trainer import Trainer

    config = TrainConfig(**json.loads(args.config))
    train, evaluation = toy_inputs(**json.loads(args.toy))
    train.nan_after_batches = args.nan_after_batches
    run = Trainer(config, args.workdir, train, evaluation)
    try:
        run.run()
    except RunError as err:  # exit status as python -m mobilenet_tf.train's
        print(f"{type(err).__name__}: {err}", flush=True)
        sys.exit(err.exit_code)
    if args.weights_out:
        np.savez(args.weights_out, *[w.numpy() for w in run.model.weights])
    if args.history_out:
        with open(args.history_out, "w") as f:
            json.dump(run.history, f)


if __name__ == "__main__":
    main()
