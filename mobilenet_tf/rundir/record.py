"""The run directory: its layout and its typed record, the contract between training
(which writes it) and evaluate, export and predict (which read it).

``RunFiles`` names the files. ``RunRecord`` (``config.json``) describes the run: the
model, the data and its splits, the class names, where the initial weights came from,
the schedule and every training option; ``RunSummary`` (``summary.json``) is the result
of a finished run. Both are written atomically and read back only through
``read_record`` / ``read_summary``, which name the file when it is missing, corrupt or
from another version. ``resume_differences`` is what a resumed run may not change.

No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from mobilenet_tf import fileio
from mobilenet_tf.data.labels import LABELS_FILE

FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
MODELS = {"best": "best.keras", "final": "final.keras"}  # finished Keras models
# What evaluate, export and predict open by default: the schedule's result. best.keras is
# chosen on the held-out photos the run reports, so its figure is optimistic, and on a
# few photos per class it is chosen by noise (docs/finetuning.md, "Which model").
DEFAULT_MODEL = "final"

RECORD_FORMAT = "mobilenet_tf.run"
RECORD_VERSION = 2  # version 1: the untyped config.json before the record (read only)

# Training options a resumed run may change: none of them changes the step count, the
# example order, the optimizer state or the model (docs/training.md, "Resuming").
RESUMABLE_CHANGES = ("epochs", "eval_every_epochs", "checkpoint_every_steps",
                     "keep_checkpoints", "steps_per_loop", "profile_steps", "log_images",
                     "verbose", "strategy", "tpu_address", "jit_compile", "data_dir",
                     "startup_timeout", "fused_batch_norm")


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The paths of one run directory."""

    workdir: str

    def _path(self, name):
        return os.path.join(self.workdir, name)

    flags = property(lambda self: self._path(FLAGS_FILE))
    labels = property(lambda self: self._path(LABELS_FILE))
    config = property(lambda self: self._path(CONFIG_FILE))
    checkpoints = property(lambda self: self._path(CHECKPOINTS_DIR))
    metrics = property(lambda self: self._path(METRICS_FILE))
    summary = property(lambda self: self._path(SUMMARY_FILE))
    lock = property(lambda self: self._path(LOCK_FILE))
    best = property(lambda self: self._path(MODELS["best"]))
    final = property(lambda self: self._path(MODELS["final"]))


class RunRecordError(ValueError):
    """config.json or summary.json is missing, unreadable or of another version."""


@dataclasses.dataclass
class DataRecord:
    config: Optional[dict]  # DataConfig.to_dict(); None when inputs were passed directly
    train_split: str
    eval_split: str
    num_train_examples: int
    num_eval_examples: int = 0

    @property
    def dataset(self) -> Optional[str]:
        return (self.config or {}).get("dataset")


@dataclasses.dataclass
class WeightsRecord:
    initial_weights: str = ""  # the --initial_weights option ("" = random init)
    loaded_layers: list = dataclasses.field(default_factory=list)  # layers copied from it
    # What the fine-tuning work records about the source (its file, its hash, ...).
    source: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ScheduleRecord:
    epochs: float
    batch_size: int  # global
    steps_per_epoch: int
    total_steps: int
    num_replicas: int = 1


@dataclasses.dataclass
class RunRecord:
    """Everything that describes a run; ``config.json``."""

    model: dict  # the keyword arguments of mobilenet_v1 (TrainConfig.model_config)
    data: DataRecord
    class_names: list
    schedule: ScheduleRecord
    options: dict  # every training option (TrainConfig.flag_values without data ones)
    weights: WeightsRecord = dataclasses.field(default_factory=WeightsRecord)
    version: int = RECORD_VERSION

    def to_json(self) -> str:
        body = {"format": RECORD_FORMAT, **dataclasses.asdict(self)}
        return json.dumps(jsonable(body), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str = CONFIG_FILE) -> "RunRecord":
        raw = _parse(text, path)
        if "version" not in raw and "model" in raw:
            return _from_version_1(raw)
        version = raw.get("version")
        if raw.get("format") != RECORD_FORMAT or version != RECORD_VERSION:
            raise RunRecordError(
                f"{path} is a run record of version {version!r} (format "
                f"{raw.get('format')!r}); this mobilenet_tf reads version {RECORD_VERSION} "
                f"({RECORD_FORMAT!r}). Use the mobilenet_tf that wrote it.")
        try:
            return cls(model=raw["model"], data=DataRecord(**raw["data"]),
                       class_names=list(raw["class_names"]),
                       schedule=ScheduleRecord(**raw["schedule"]),
                       options=dict(raw["options"]), weights=WeightsRecord(**raw["weights"]),
                       version=version)
        except (KeyError, TypeError) as err:
            raise RunRecordError(f"{path} is not a complete run record ({err!r}); it was "
                                 "not written by mobilenet_tf.train or was edited") from err

    def option(self, name, default=None):
        return self.options.get(name, default)


@dataclasses.dataclass
class RunSummary:
    """The result of a finished run; ``summary.json``."""

    top1: Optional[float]
    top5: Optional[float]
    loss: Optional[float]
    eval_examples: int
    eval_split: Optional[str]
    params: int
    mult_adds: int
    keras_params: int
    images_per_second: Optional[float]
    wall_seconds: float
    epochs: float
    steps: int
    optimizer_steps: int
    best_checkpoint: str
    best_top1: Optional[float]
    best_epoch: int
    final_checkpoint: str
    ema: bool
    num_replicas: int
    bad_images: int
    # Fine-tuning with a new classifier: the head-only baseline's top-1 on the same
    # held-out photos (training.linear_probe); None when not measured.
    baseline_top1: Optional[float] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str = SUMMARY_FILE) -> "RunSummary":
        raw = _parse(text, path)
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as err:
            raise RunRecordError(f"{path} is not a complete run summary ({err}); delete it "
                                 "and run the same training command to rewrite it") from err


def _parse(text: str, path: str) -> dict:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunRecordError(f"{path} is corrupt (not JSON: {err}); it is written "
                             "atomically, so it was changed after training wrote it") from err
    if not isinstance(raw, dict):
        raise RunRecordError(f"{path} is corrupt: a JSON object was expected")
    return raw


def _from_version_1(raw: dict) -> RunRecord:
    """The untyped config.json of runs written before the record existed."""
    train = dict(raw.get("train") or {})
    data = raw.get("data")
    spe = int(raw.get("steps_per_epoch") or 0)
    epochs = float(train.get("epochs", 0) or 0)
    return RunRecord(
        model=dict(raw["model"]),
        data=DataRecord(config=data, train_split=str(train.get("train_split", "train")),
                        eval_split=str(train.get("eval_split", "")),
                        num_train_examples=int(raw.get("num_train_examples") or 0),
                        num_eval_examples=int(raw.get("num_eval_examples") or 0)),
        class_names=list(raw.get("class_names") or []),
        schedule=ScheduleRecord(epochs=epochs, batch_size=int(train.get("batch_size", 0)),
                                steps_per_epoch=spe, total_steps=int(-(-epochs * spe // 1)),
                                num_replicas=int(raw.get("num_replicas") or 1)),
        options=train, weights=WeightsRecord(str(train.get("initial_weights") or "")),
        version=1)


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise RunRecordError(f"{path} does not exist: {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RunRecordError(f"{path} cannot be read: {err}") from err


def read_record(workdir: str) -> RunRecord:
    """The run's record; RunRecordError naming config.json when it is missing or bad."""
    path = RunFiles(workdir).config
    return RunRecord.from_json(_read_text(
        path, f"{workdir} is not a run directory written by mobilenet_tf.train (or "
              "training had not started); pass a .keras file to load a model alone"), path)


def write_record(workdir: str, record: RunRecord) -> None:
    fileio.atomic_write_text(RunFiles(workdir).config, record.to_json())


def read_summary(workdir: str) -> Optional[RunSummary]:
    """The finished run's summary, or None when the run has not finished."""
    path = RunFiles(workdir).summary
    if not os.path.exists(path):
        return None
    return RunSummary.from_json(_read_text(path, ""), path)


def write_summary(workdir: str, summary: RunSummary) -> None:
    fileio.atomic_write_text(RunFiles(workdir).summary, summary.to_json())


def resume_differences(recorded: RunRecord, current: RunRecord) -> list[str]:
    """What ``current`` changes of ``recorded`` that a resumed run may not change: one
    line per difference, ``name: recorded -> now``. Empty when it may resume."""
    diffs = []

    def compare(name, old, new):
        if jsonable(old) != jsonable(new):
            diffs.append(f"{name}: {old!r} (recorded) -> {new!r} (now)")

    compare("model", recorded.model, current.model)
    compare("class names", recorded.class_names, current.class_names)
    compare("number of training examples", recorded.data.num_train_examples,
            current.data.num_train_examples)
    compare("steps per epoch", recorded.schedule.steps_per_epoch,
            current.schedule.steps_per_epoch)
    old_data, new_data = recorded.data.config or {}, current.data.config or {}
    for key in sorted(set(old_data) | set(new_data)):
        if key not in RESUMABLE_CHANGES:
            compare(f"--{key}", old_data.get(key), new_data.get(key))
    defaults = _option_defaults()
    for key in sorted(set(recorded.options) | set(current.options)):
        if key not in RESUMABLE_CHANGES:  # an option newer than the run had its default
            compare(f"--{key}", recorded.options.get(key, defaults.get(key)),
                    current.options.get(key))
    return diffs


def _option_defaults() -> dict:
    """{option: default} of TrainConfig, for records written before an option existed."""
    from mobilenet_tf.training.config import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)
            if f.default is not dataclasses.MISSING}


def jsonable(value: Any):
    """``value`` as JSON holds it: dataclasses as dicts, tuples as lists (so a value read
    back compares equal to the one written)."""
    if dataclasses.is_dataclass(value):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
