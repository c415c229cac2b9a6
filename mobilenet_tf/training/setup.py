"""Setting a run up: inputs, strategy, the run's record, the resume checks, the model and
the restored checkpoint. ``trainer.Trainer`` holds a ``RunSetup``; once the run directory
is locked, ``RunSetup.prepare()`` returns the ``RunState`` that the loop trains.

Before anything is written, ``prepare()`` compares this command with the recorded run
(``run_record.resume_differences``) and refuses a run directory that holds history (metrics,
best.keras, a summary) but no checkpoint; then it builds the model (loading
``--initial_weights`` only when starting from step 0), restores the newest readable
checkpoint (``checkpointing.CheckpointStore``), writes the record, labels and flags and
rewrites metrics.csv from the checkpointed rows. The config is validated by the caller
(``trainer.train_and_evaluate``), once.
"""

from __future__ import annotations

import functools
import math
import os

import keras
import tensorflow as tf

from mobilenet_tf import fileio
from mobilenet_tf.training import (bn_statistics, checkpointing, classifier_init,
                                   distribute, head_refit, linear_probe, reporting,
                                   task as train_task, tensorboard_logging as tb)
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.model.architecture import activation_values
from mobilenet_tf.model.builder import CLASSIFIER_LAYER
from mobilenet_tf.rundir.errors import ResumeRefused, writing
from mobilenet_tf.rundir.record import RunFiles
from mobilenet_tf.training.config import TrainConfig, flags_text


def build_inputs(config: TrainConfig):
    """The train and eval inputs from ``config.data`` (``mobilenet_tf.data.build_input``).

    A resumed run restarts the seeded example order (the input pipeline is not
    checkpointed: its shuffle buffer would be as large as the images it holds); the
    epoch, step and learning-rate position resume exactly. Inputs that cannot be learned
    (one class, a class or a held-out split without images) are refused here
    (``data.learnable``).
    """
    from mobilenet_tf.data import learnable

    if config.data is None:
        raise ValueError("TrainConfig.data is None: set it to a data.DataConfig (the "
                         "--dataset flags), or pass train_input/eval_input objects")
    return learnable.build_training_inputs(config.data_config(), config.train_split,
                                           config.eval_split, config.batch_size)


class RunState:
    """What a checkpoint holds: the task (model, optimizers, weight average), the loop's
    counters and the metrics rows, with the store that saves and restores them. The names
    of the checkpoint's items are its object graph: old runs resume only while they stay.
    ``scratch_dir`` is a non-chief worker's checkpoint directory, removed after the run."""

    def __init__(self, setup: RunSetup, task: train_task.Task, ckpt_dir: str):
        self.task = task
        self.model = task.model
        with setup.strategy.scope():
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                           name="global_step")
            self.evaluated_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.best_top1 = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.wall_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.metrics_history = checkpointing.MetricsHistory()  # outside the scope
        items = dict(model=self.model, optimizer=task.optimizer,
                     global_step=self.global_step, evaluated_epoch=self.evaluated_epoch,
                     best_top1=self.best_top1, best_epoch=self.best_epoch,
                     wall_seconds=self.wall_seconds, history=self.metrics_history.variable)
        if task.ema is not None:
            items["ema"] = task.ema
        if task.backbone_optimizer is not None:
            items["backbone_optimizer"] = task.backbone_optimizer
        if task.starting_point is not None:
            items["starting_point"] = task.starting_point
        self.store = checkpointing.CheckpointStore(
            tf.train.Checkpoint(**items), setup.files.checkpoints,
            RunFiles(ckpt_dir).checkpoints, setup.config.keep_checkpoints, setup.chief,
            setup.console.warn)
        self.scratch_dir = None if setup.chief else ckpt_dir


# float32 bytes kept per layer output for the backward pass: the convolution's, batch
# norm's and ReLU's outputs (a lower bound: gradients and workspace come on top).
_BYTES_PER_VALUE = 3 * 4


def check_memory(config: TrainConfig, replicas: int) -> None:
    """ValueError for a --resolution and --batch_size whose activations alone exceed this
    machine's memory: refused at once, instead of an out-of-memory failure minutes later
    with a half-written run directory."""
    values = activation_values(config.alpha, config.resolution, config.variant)
    need = values * _BYTES_PER_VALUE * (config.batch_size // replicas)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ValueError(
            f"--resolution={config.resolution} with --batch_size={config.batch_size} is "
            f"not valid here: training would need over {need / 2**30:,.0f} GiB for the "
            f"layer outputs alone, and this machine has {have / 2**30:,.0f} GiB; lower "
            "--resolution or --batch_size.")


class RunSetup:
    """A run before its first step: the config, run files, strategy, inputs, schedule
    (``spe`` steps per epoch), console and the record this command would write."""

    def __init__(self, config: TrainConfig, workdir: str, train_input=None, eval_input=None):
        self.config = config
        self.files = RunFiles(workdir)
        self.strategy = distribute.make_strategy(config.strategy, config.tpu_address,
                                                 config.startup_timeout)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"--batch_size={config.batch_size} is not valid: it must be "
                             f"divisible by the number of replicas ({replicas})")
        check_memory(config, replicas)
        self.chief = distribute.is_chief(self.strategy)
        keras.utils.set_random_seed(config.seed)
        if train_input is None:
            train_input, built_eval = build_inputs(config)
            eval_input = built_eval if eval_input is None else eval_input
        self.train_input, self.eval_input = train_input, eval_input
        self.class_names = list(train_input.class_names)
        self.num_classes = len(self.class_names)
        self.spe = config.steps_per_epoch or (
            train_input.num_examples // config.batch_size)
        if self.spe < 1:
            raise ValueError(f"--batch_size={config.batch_size} is not valid: it is larger "
                             f"than the {train_input.num_examples} training examples")
        self.total_steps = int(math.ceil(config.epochs * self.spe))
        self.num_epochs = int(math.ceil(config.epochs))
        self.console = reporting.Console(config.verbose, self.num_epochs,
                                           enabled=self.chief)
        self.record = self._current_record()

    def _current_record(self) -> run_record.RunRecord:
        cfg = self.config
        data_cfg = cfg.data_config() if cfg.data is not None else None
        options = {k: v for k, v in cfg.flag_values().items()
                   if not (data_cfg is not None and hasattr(data_cfg, k))}
        return run_record.RunRecord(
            model=cfg.model_config(self.num_classes),
            data=run_record.DataRecord(
                config=data_cfg.to_dict() if data_cfg is not None else None,
                train_split=cfg.train_split, eval_split=cfg.eval_split,
                num_train_examples=int(self.train_input.num_examples),
                num_eval_examples=int(self.eval_input.num_examples) if self.eval_input
                else 0),
            class_names=self.class_names,
            schedule=run_record.ScheduleRecord(
                epochs=cfg.epochs, batch_size=cfg.batch_size, steps_per_epoch=self.spe,
                total_steps=self.total_steps,
                num_replicas=self.strategy.num_replicas_in_sync),
            options=run_record.jsonable(options),
            weights=run_record.WeightsRecord(initial_weights=cfg.initial_weights))

    # ------------------------------------------------------------- resume checks
    def _history(self) -> list[str]:
        """The outputs of earlier training in the run directory."""
        files, found = self.files, []
        if os.path.exists(files.metrics):
            with open(files.metrics, "rb") as f:
                rows = max(0, sum(1 for line in f if line.strip(b"\0\r\n")) - 1)
            if rows:
                found.append(f"{files.metrics} ({rows} rows)")
        found += [p for p in (files.best, files.final, files.summary) if os.path.exists(p)]
        return found

    def _start_over(self, resume_advice: bool) -> str:
        text = (f"To start over, use a new --workdir (or delete {self.files.workdir})")
        if not resume_advice:  # repeating the recorded options would not help
            return text + "."
        return text + f"; to resume, repeat the recorded options: --flagfile={self.files.flags}."

    def _check_resume(self, candidates) -> run_record.RunRecord | None:
        """The recorded run when this command may resume it; ResumeRefused otherwise."""
        run = self.files.workdir
        if not candidates:
            history = self._history()
            if history:
                raise ResumeRefused(
                    f"{run} holds the results of earlier training ({', '.join(history)}) "
                    f"but no checkpoint in {self.files.checkpoints} to resume from; "
                    f"training from step 0 would overwrite them. "
                    f"{self._start_over(False)}")
            return None
        try:
            recorded = run_record.read_record(run)
        except run_record.RunRecordError as err:
            reason = str(err).rstrip(".")
            raise ResumeRefused(f"{run} has checkpoints but its record cannot be used: "
                                f"{reason}. {self._start_over(False)}") from err
        if recorded.version != run_record.RECORD_VERSION:
            raise ResumeRefused(f"{self.files.config} was written by an older mobilenet_tf "
                                f"(record version {recorded.version}); resume that run "
                                f"with it. {self._start_over(False)}")
        self._refuse_changes(recorded, "a run")
        return recorded

    def _refuse_changes(self, recorded: run_record.RunRecord, what: str) -> None:
        """ResumeRefused listing the options this command changes of ``recorded``."""
        diffs = run_record.resume_differences(recorded, self.record)
        if diffs:
            allowed = ", ".join(f"--{k}" for k in run_record.RESUMABLE_CHANGES)
            raise ResumeRefused(
                f"{self.files.workdir} holds {what} that this command differs from:\n  "
                + "\n  ".join(diffs)
                + "\nResuming would change the step count, the example order, the optimizer "
                f"state or the model. Options a resumed run may change: {allowed}. "
                + self._start_over(True))

    def check_finished(self) -> None:
        """For a finished run: ResumeRefused when this command's options differ from its
        record (its result is not the result of these options)."""
        try:
            recorded = run_record.read_record(self.files.workdir)
        except run_record.RunRecordError:
            return  # no record to compare with: the summary alone says it is finished
        self._refuse_changes(recorded, "a finished run")

    def _check_steps(self, step: int) -> None:
        """ResumeRefused when the run has trained past this command's last step (a lower
        --epochs): ending it there would record an epoch count the checkpoint exceeds."""
        if step > self.total_steps:
            raise ResumeRefused(
                f"{self.files.workdir} has trained {step} steps ({step / self.spe:g} "
                f"epochs), more than --epochs={self.config.epochs:g} gives "
                f"({self.total_steps} steps); run it with --epochs >= {step / self.spe:g} "
                f"to finish it. {self._start_over(False)}")

    # ------------------------------------------------------------------ prepare
    def prepare(self) -> RunState:
        """Everything before the first step (see the module docstring)."""
        ckpt_dir = distribute.write_dir(self.files.workdir, self.strategy)
        candidates = checkpointing.list_checkpoints(self.files.checkpoints)
        recorded = self._check_resume(candidates)
        task = train_task.build_task(self.config, self.num_classes, self.spe,
                                     self.total_steps, self.strategy,
                                     initial_weights=not candidates)
        state = RunState(self, task, ckpt_dir)
        state.store.clean_partial_writes()
        restored = state.store.restore()
        if restored:
            step = int(state.global_step.numpy())
            self._check_steps(step)
            epoch = (f"epoch {step // self.spe + 1}" if step < self.total_steps
                     else "after its last step")
            self.console.say(f"Resuming from {restored} (step {step}, {epoch}).")
            self.record.weights = recorded.weights
        else:
            self._record_initial_weights(task.weights_report)
            self.start_from_weights(state, task.weights_report)
        self._write_run_files(state)
        return state

    def _record_initial_weights(self, report):
        """Prints what --initial_weights loaded and records where it came from."""
        if report is None:
            return
        self.console.say(report.summary())
        if report.backbone_not_loaded:
            self.console.warn(
                f"--initial_weights={self.config.initial_weights}: "
                f"{len(report.backbone_not_loaded)} layers besides the classifier keep "
                f"their random init ({', '.join(report.backbone_not_loaded[:5])}"
                + (", ..." if len(report.backbone_not_loaded) > 5 else "")
                + "); check --alpha/--variant/--depth_multiplier against the weights")
        self.record.weights.loaded_layers = list(report.loaded)
        self.record.weights.source = report.provenance()

    def start_from_weights(self, state: RunState, report):
        """What a run does to the loaded ``--initial_weights`` before its first step:
        ``--recompute_bn`` (bn_statistics.py), the head-only baseline (linear_probe.py)
        and the new classifier's start (``--classifier_init``)."""
        if report is None:
            return
        cfg, source = self.config, self.record.weights.source
        if cfg.recompute_bn:
            seen = bn_statistics.recompute(state.model, self.plain_train_batches(),
                                           bn_statistics.SAMPLE)
            self.console.say(f"Batch norm: statistics measured on {seen} training photos "
                             "(the network still computes what it loaded).")
            source["recompute_bn"] = {"images": seen}
        new_classifier = not report.classifier_loaded
        probe = None
        if new_classifier and (cfg.baseline or cfg.classifier_init == "linear_probe"):
            probe = self.fit_baseline(state)
            source["baseline"] = probe.record()
        if probe is not None and cfg.classifier_init == "linear_probe":
            classifier_init.set_classifier(state.model, probe.kernel, probe.bias)
            self.console.say("Classifier: started from the head-only baseline (LP-FT).")
            source["classifier"] = {"classifier_init": "linear_probe"}
        else:
            self.classifier_from_source(state, report)
        for start in (state.task.ema, state.task.starting_point):
            if start is not None:
                start.reset()

    def baseline_top1(self) -> float | None:
        """The head-only baseline's held-out top-1 (recorded, so a resumed run has it)."""
        return (self.record.weights.source.get("baseline") or {}).get("eval_top1")

    def plain_train_batches(self):
        """The training split once, shuffled, with the evaluation preprocessing (whole
        photos, no augmentation): what the baseline and the batch-norm statistics are
        measured on (the first photos of a shuffled pass are a sample of every class).
        Inputs passed in (no ``config.data``) give their own batches."""
        if self.config.data is None:
            return self.train_input.input_fn(tf.distribute.InputContext())
        from mobilenet_tf.data.pipeline import build_input

        return build_input(self.config.data_config(), self.config.train_split,
                           training=False, global_batch_size=self.config.batch_size,
                           class_names=self.class_names, shuffle=True).input_fn(
                               tf.distribute.InputContext())

    def fit_baseline(self, state: RunState) -> linear_probe.Probe:
        """The head-only baseline on the training photos, scored on the held-out ones."""
        features = functools.partial(classifier_init.sample_features, state.model)
        f, y = features(self.plain_train_batches(), self.train_input.num_examples)
        probe = linear_probe.fit(f, y.argmax(axis=1), seed=self.config.seed)
        if self.eval_input is not None:
            f, y = features(self.eval_input.input_fn(tf.distribute.InputContext()),
                            self.eval_input.num_examples)
            probe.eval_top1, probe.eval_examples = probe.score(f, y.argmax(axis=1)), len(y)
        self.console.say(probe.summary())
        return probe

    def refit_head(self, state: RunState):
        """--refit_head, after the last step (head_refit.py)."""
        probe = head_refit.refit(state.model, self.plain_train_batches(),
                                 self.train_input.num_examples, state.task.ema,
                                 seed=self.config.seed)
        self.console.say(head_refit.message(probe))
        self.record.weights.source["refit_head"] = head_refit.record(probe)
        self.write_run_record()

    def classifier_from_source(self, state: RunState, report):
        """--classifier_init=source: maps the file's classifier onto the new classes
        (classifier_init.py) from a pipeline of its own, like the image grids."""
        if report is None or self.config.classifier_init != "source":
            return
        if report.classifier_loaded:
            self.console.say("Classifier: loaded from the weights file (same classes).")
            return
        if report.source_classifier is None:
            raise ValueError(f"--classifier_init=source: {report.path} has no classifier "
                             f"({CLASSIFIER_LAYER}) to start from; use weights saved with "
                             "their classifier, or --classifier_init=zeros")
        batches = self.train_input.input_fn(tf.distribute.InputContext())
        done = classifier_init.init_from_source(
            state.model, report.source_classifier, batches,
            classifier_init.sample_size(self.num_classes))
        self.console.say(done.summary())
        self.record.weights.source["classifier"] = done.record()

    def _write_run_files(self, state: RunState):
        if not self.chief:
            return
        from mobilenet_tf.data import write_labels

        os.makedirs(self.files.workdir, exist_ok=True)
        with writing(self.files.labels):
            write_labels(self.files.labels, self.class_names)
        self.write_run_record()
        with writing(self.files.flags):
            fileio.atomic_write_text(self.files.flags, flags_text(self.config))
        self.write_metrics_csv(state.metrics_history)

    def write_run_record(self):
        """config.json from ``self.record`` (chief only)."""
        if self.chief:
            with writing(self.files.config):
                run_record.write_record(self.files.workdir, self.record)

    def write_metrics_csv(self, metrics_history: checkpointing.MetricsHistory):
        """metrics.csv from the rows in the (restored or just saved) checkpoint."""
        if self.chief:
            with writing(self.files.metrics):
                reporting.write_metrics_csv(self.files.metrics, metrics_history.rows())

    def write_hparams(self, writers: tb.Writers):
        """The run's options, as TensorBoard's hparams plugin shows them (chief only),
        with the values used where a flag means "auto" (steps_per_epoch=0)."""
        if self.chief:
            tb.write_hparams(writers, self.config,
                             os.path.basename(os.path.abspath(self.files.workdir)),
                             has_validation=self.eval_input is not None,
                             has_baseline=self.baseline_top1() is not None,
                             used={"steps_per_epoch": self.spe,
                                   "num_classes": self.num_classes,
                                   "num_replicas": self.strategy.num_replicas_in_sync})
