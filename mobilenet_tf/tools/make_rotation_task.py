"""A task whose classes ImageNet does not name: which way a photo was turned.

Each photo of a SOURCE/<split>/<class>/ folder (the 100/class Imagenette split of
docs/results.md) is rotated by a seeded random choice of 0, 90, 180 or 270 degrees and
saved under OUT/<split>/rot<degrees>/. Train on it with --noflip (a horizontal flip turns
a 90-degree photo into a 270-degree one):

  python -m mobilenet_tf.tools.make_rotation_task SOURCE OUT
  python -m mobilenet_tf.train --flagfile=experiments/finetune.cfg \\
      --dataset=folder:OUT --initial_weights=W --noflip --workdir=runs/rot
"""

import os
import sys

import numpy as np
from PIL import Image


def main(source: str, out: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split in sorted(os.listdir(source)):
        files = sorted(os.path.join(source, split, c, f)
                       for c in sorted(os.listdir(os.path.join(source, split)))
                       for f in sorted(os.listdir(os.path.join(source, split, c))))
        for i, path in enumerate(files):
            degrees = 90 * int(rng.integers(4))
            folder = os.path.join(out, split, f"rot{degrees:03d}")
            os.makedirs(folder, exist_ok=True)
            Image.open(path).convert("RGB").rotate(degrees, expand=True).save(
                os.path.join(folder, f"{i:05d}.jpg"), quality=92)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
