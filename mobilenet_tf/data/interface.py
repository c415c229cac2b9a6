"""The input interface: what ``build_input`` returns and the trainer consumes.

The trainer takes its train and eval inputs as objects (``Trainer(config, workdir,
train_input, eval_input)``), so tests can hand it small in-memory inputs instead of
building a tf.data pipeline from files. These protocols name what such an object must
offer; :class:`mobilenet_tf.data.pipeline.InputPipeline` is the real implementation.

The module imports no TensorFlow, so a command line can name the types before it loads
TensorFlow; the TensorFlow types appear only in annotations.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import tensorflow as tf


# How the one-line message of ``--bad_images=error`` starts.
BAD_IMAGES_ERROR = "--bad_images=error: "


def bad_images_failure(text: str) -> str | None:
    """The one-line ``--bad_images=error`` message inside the text of the TensorFlow error
    that stopped an input, or None. The pipeline fails in-graph, so the error reaches
    Python as an ``InvalidArgumentError`` whose first line may be only "Graph execution
    error:" (a training or evaluation step) with ``assertion failed: [MESSAGE]`` below;
    a command's error handler finds the message here without importing TensorFlow."""
    for line in text.splitlines():
        at = line.find(BAD_IMAGES_ERROR)
        if at >= 0:
            end = line.rfind("]")
            return line[at:end if end > at else None].strip()
    return None


class BadImageTally(Protocol):
    """The images an input skipped because they could not be decoded."""

    @property
    def count(self) -> int:
        """How many distinct bad images were skipped so far."""

    @property
    def examples(self) -> Sequence[str]:
        """The names of the first few, for the end-of-run report."""


@dataclasses.dataclass
class NoBadImages(BadImageTally):
    """The tally of an input that decodes no files (arrays in memory): always empty."""

    count: int = 0
    examples: tuple = ()


@runtime_checkable
class Input(Protocol):
    """One split's examples, ready to be distributed over replicas.

    The members are plain attributes, not properties, so a dataclass can subclass the
    protocol and declare them as fields.
    """

    class_names: list[str]  # in label order: label i is class_names[i]
    num_examples: int  # examples in one pass; the trainer derives steps per epoch from it
    bad_images: BadImageTally  # filled while the datasets are iterated

    def input_fn(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """One input pipeline's dataset of per-replica batches, for
        ``strategy.distribute_datasets_from_function``: training inputs repeat and yield
        one-hot float32 labels, eval inputs make one pass with int32 labels."""
