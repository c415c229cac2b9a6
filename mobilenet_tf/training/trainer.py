"""Training and evaluation of MobileNet v1 under any tf.distribute strategy: the loop.

``train_and_evaluate(config, workdir)`` is the library entry point (``mobilenet_tf.train``
is its thin command line). One custom loop serves every strategy (one device, mirrored
GPUs, multi-worker, TPU): ``strategy.run`` inside a ``tf.function`` that runs
``steps_per_loop`` steps per call, over ``strategy.distribute_datasets_from_function``.
(Keras' ``model.fit`` fails under MultiWorkerMirroredStrategy in Keras 3,
keras-team/keras#20585.)

The parts: ``config`` (the options), ``setup`` (what a run is before its first step, and
its checkpointed state), ``task`` (model, optimizer, schedule, loss, weight average),
``steps`` (the step functions), ``checkpointing`` (verified saves, restore with fallback),
``rundir`` (the run directory, its record and its lock), ``reporting`` (metrics.csv,
console, report) and ``tensorboard_logging``. What a resumed run restores and refuses is
in docs/training.md ("Resuming").
"""

from __future__ import annotations

import os
import shutil
import time

import keras
import tensorflow as tf

from mobilenet_tf import failures
from mobilenet_tf.model.costs import profile_model
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.rundir.errors import (Interrupted, OutputWriteError, Preempted,
                                        TrainingDivergedError, writing)
from mobilenet_tf.rundir.lock import RunLock
from mobilenet_tf.training import (distribute, finetune, reporting,
                                   steps as train_steps, task as train_task,
                                   tensorboard_logging as tb)
from mobilenet_tf.training.config import TrainConfig
from mobilenet_tf.training.setup import RunSetup, RunState


def train_and_evaluate(config: TrainConfig, workdir: str, train_input=None, eval_input=None):
    """Trains ``config`` into ``workdir`` (resuming from it when it holds a checkpoint) and
    returns the summary dict (also written to summary.json).

    ``train_input`` / ``eval_input`` default to ``setup.build_inputs(config)``; tests and
    benchmarks may pass any ``data.interface.Input`` (what ``data.build_input`` returns).
    Raises a ``RunError`` (its ``exit_code`` is the command line's) when the run stops,
    and ValueError for an invalid config (the one validation of a run).
    """
    config.validate()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return Trainer(config, workdir, train_input, eval_input).run()
    finally:
        keras.config.set_dtype_policy(previous_policy)


class Trainer:
    """One training run into ``workdir``; ``train_and_evaluate`` is the usual way in (it
    validates the config; this class does not).

    ``setup`` is the run before its first step (strategy, inputs, schedule, record);
    ``state`` the checkpointed state, prepared by ``run()`` once the run directory is
    locked. After ``run()``, ``model`` is the trained (raw, not averaged) model,
    ``history`` the (optimizer step, mean training loss) and ``timing`` the (images, wall
    seconds, process CPU seconds) of every training loop call of this process (the first
    call includes tracing).
    """

    def __init__(self, config: TrainConfig, workdir: str, train_input=None, eval_input=None):
        self.setup = RunSetup(config, workdir, train_input, eval_input)
        self.config = config
        self.state: RunState | None = None
        self.writers: tb.Writers | None = None
        self.history, self.timing = [], []
        self.saved_checkpoints = 0  # by this process
        self.clock = None  # (when this process started, wall seconds of the run before)
        self.dist_eval = self.evaluate_fn = self.last_eval = None
        self.profiler: tb.Profiler | None = None
        self.graph: tb.GraphTrace | None = None
        self.throughput = [0.0, 0]  # seconds, images (after the first, tracing, call)
        self._compiled = None  # (phase, train loop): rebuilt when the phase changes
        self.saved_model = train_task.SavedModel(config, self.setup.num_classes,
                                                 self.setup.chief)  # best/final.keras

    @property
    def model(self) -> keras.Model | None:
        """The model being trained (None before ``run()``)."""
        return self.state.model if self.state is not None else None

    def run(self) -> dict:
        """Trains to ``config.epochs``; returns the summary dict. A finished run (its
        summary has ``config.epochs`` or more) is left as it is, once its record shows
        the same options (ResumeRefused otherwise)."""
        setup = self.setup
        summary = run_record.read_summary(setup.files.workdir)
        if summary is not None and summary.epochs >= self.config.epochs:
            setup.check_finished()
            setup.console.say(
                f"The run in {setup.files.workdir} is already complete ({summary.epochs:g} "
                f"epochs, top-1 {reporting.pct(summary.top1)}); nothing to do. Use a new "
                "--workdir, or raise --epochs to train further.")
            return summary.to_dict()
        lock = RunLock(setup.files.workdir, setup.console.warn) if setup.chief else None
        try:
            if lock:
                lock.acquire()
            return self._run()
        except TrainingDivergedError:
            if setup.chief:
                tb.end_session(self.writers.logdir, "failure")
            raise
        except (OSError, tf.errors.OpError) as err:
            if failures.is_disk_full(err):
                if self.writers is not None and not self.saved_checkpoints:
                    self.writers.remove_own_files()  # nothing kept: all is logged again
                where = getattr(err, "filename", None) or setup.files.workdir
                raise OutputWriteError(
                    f"No space left on the device of {where} "
                    f"({failures.first_line(err)}); free some space and run the same "
                    "command to resume from the last checkpoint.") from err
            raise
        finally:
            if lock:
                lock.release()

    def _run(self) -> dict:
        t_start = time.time()
        setup = self.setup
        self.state = state = setup.prepare()  # resume checks, model, restore, run record
        self.clock = (t_start, float(state.wall_seconds.numpy()))
        step = int(state.global_step.numpy())
        iterator = iter(setup.strategy.distribute_datasets_from_function(
            setup.train_input.input_fn))
        if setup.eval_input is not None:
            self.dist_eval = setup.strategy.distribute_datasets_from_function(
                setup.eval_input.input_fn)
            self.evaluate_fn = train_steps.make_eval_loop(setup.strategy, state.model,
                                                          setup.num_classes)
        self.writers = tb.Writers(setup.files.workdir, setup.chief, setup.num_classes)
        setup.write_hparams(self.writers)
        if setup.chief:
            tb.write_model_graph(self.writers, state.model, self.config.resolution,
                                 setup.console.warn)
        self.profiler = tb.Profiler(self.writers, self.config.parsed_profile_steps())
        self.graph = tb.GraphTrace(self.writers)
        stop = distribute.StopFlag()
        try:
            # An epoch whose last step ran but whose end (eval, checkpoint) did not; the
            # last epoch may be partial (fractional --epochs).
            ended = setup.num_epochs if step >= setup.total_steps else step // setup.spe
            if step and ended > int(state.evaluated_epoch.numpy()):
                self.end_of_epoch(ended, None, None)
            while step < setup.total_steps:
                self._log_images(step)
                train_metrics, ips = self._train_epoch(iterator, step, stop)
                step = int(state.global_step.numpy())
                self.end_of_epoch(-(-step // setup.spe), train_metrics, ips)
        finally:
            stop.restore()
            self.profiler.close()
            try:
                self.writers.flush()
            finally:
                self.writers.close()  # also on errors: no open files left in the run
                if state.scratch_dir:  # a non-chief worker's checkpoints are not kept
                    shutil.rmtree(state.scratch_dir, ignore_errors=True)
        seconds, images = self.throughput
        return self._finish(images / seconds if seconds else None).to_dict()

    # ----------------------------------------------------------------- training
    def phase_for_step(self, step: int):
        """The training phase at optimizer step ``step``: None (one phase), or with the
        fine-tuning flags ``finetune.HEAD``/``finetune.WHOLE``. The loop rebuilds its
        compiled train function when the phase changes, and no loop call crosses a
        phase boundary (``phase_boundaries``)."""
        if not train_task.fine_tuning(self.config):
            return None
        return finetune.phase_at(step, self.phase_boundaries()[0])

    def phase_boundaries(self) -> list:
        """The steps at which a new phase starts."""
        if not train_task.fine_tuning(self.config):
            return []
        return [finetune.head_steps(self.config.freeze_backbone_epochs, self.setup.spe)]

    def _train_function(self, step: int):
        phase = self.phase_for_step(step)
        if self._compiled is None or self._compiled[0] != phase:
            task, cfg = self.state.task, self.config
            if phase is not None:  # trainability is read when the step is traced
                finetune.set_phase(task.model, phase, cfg.freeze_bn, cfg.frozen_blocks)
                if phase == finetune.WHOLE and cfg.freeze_backbone_epochs:
                    self.setup.console.say(finetune.switch_message(
                        step // self.setup.spe + 1, cfg.backbone_lr_scale, cfg.freeze_bn,
                        cfg.frozen_blocks))
            updates, objective = task.updates, task.phase_objective()

            def replica_step(images, labels):
                return train_steps.train_step(task.model, updates, objective,
                                              images, labels)

            step_fn = (tf.function(replica_step, jit_compile=True)
                       if cfg.jit_compile else replica_step)
            self._compiled = (phase, train_steps.make_train_loop(
                self.setup.strategy, step_fn, self.state.global_step, task.ema))
        return self._compiled[1]

    def _train_epoch(self, iterator, step, stop):
        """Trains from ``step`` to the end of its epoch; (mean metrics, images/s)."""
        cfg, spe = self.config, self.setup.spe
        epoch = step // spe  # 0-based
        epoch_end = min((epoch + 1) * spe, self.setup.total_steps)
        totals = dict.fromkeys(train_steps.METRICS, 0.0)
        seconds, images = 0.0, 0
        while step < epoch_end:
            train_loop = self._train_function(step)  # a new phase: a new function
            n = self._steps_in_call(step, epoch_end)
            out, dt = self._call(train_loop, iterator, step, n)
            step += n
            if not train_steps.finite(out):
                self._diverged(step, out)
            totals = {k: totals[k] + float(out[k]) for k in totals}
            mean = train_steps.mean_metrics(out)
            self.history.append((step, mean["loss"]))
            if len(self.timing) > 1:  # the first call traces the graph
                seconds, images = seconds + dt, images + n * cfg.batch_size
            lr = self.state.task.learning_rate()
            tb.train_scalars(self.writers, mean, lr, n * cfg.batch_size / dt, step / spe, step)
            self.setup.console.progress(epoch + 1, step - epoch * spe, epoch_end - epoch * spe,
                                        {"loss": mean["loss"], "top1": mean["top1"], "lr": lr})
            if step % cfg.checkpoint_every_steps == 0 and step != epoch_end:
                self.save_checkpoint(step)
            if stop.flag:
                raise self._preempted(step, stop.signal)
        self.throughput = [self.throughput[0] + seconds, self.throughput[1] + images]
        return train_steps.mean_metrics(totals), (images / seconds if seconds else None)

    def _steps_in_call(self, step, epoch_end):
        cfg = self.config
        n = min(cfg.steps_per_loop, epoch_end - step,
                cfg.checkpoint_every_steps - step % cfg.checkpoint_every_steps)
        for b in [*self.profiler.boundaries(), *self.phase_boundaries()]:
            if step < b < step + n:
                n = b - step
        return n

    def _call(self, train_loop, iterator, step, n):
        self.profiler.maybe_toggle(step)
        first = not self.timing
        if first:
            self.graph.start()
        t0, c0 = time.time(), time.process_time()
        out = {k: v.numpy() for k, v in train_loop(iterator, tf.constant(n, tf.int32)).items()}
        dt = time.time() - t0
        self.timing.append((n * self.config.batch_size, dt, time.process_time() - c0))
        if first:
            self.graph.stop(step)
        return out, dt

    def save_checkpoint(self, step):
        """Checkpoints the state at ``step`` (with the run's wall time so far); returns
        the checkpoint's path. Tests override this and ``end_of_epoch`` to inject faults."""
        self.state.wall_seconds.assign(self.clock[1] + time.time() - self.clock[0])
        path = self.state.store.save(step)
        self.saved_checkpoints += 1
        return path

    def _preempted(self, step, signal_name):
        """SIGTERM or Ctrl-C: checkpoint now, except in a multi-worker cluster, where
        saving is a collective that the other workers (not signalled) would not join;
        there the run resumes from the last periodic checkpoint."""
        if isinstance(self.setup.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            saved = f"the latest checkpoint is {self.state.store.latest_path}"
        else:
            self.save_checkpoint(step)
            saved = f"saved a checkpoint at step {step} in {self.setup.files.checkpoints}"
        if signal_name == "SIGINT":
            return Interrupted(f"Ctrl-C: {saved}; run the same command to resume.")
        return Preempted(f"SIGTERM received: {saved}; run the same command to resume.")

    def _diverged(self, step, out):
        latest = self.state.store.latest_path
        kept = (f"The last good checkpoint, {latest}, is kept; re-running resumes from it."
                if latest else "No checkpoint had been written yet.")
        loss = train_steps.mean_metrics(out)["loss"]
        raise TrainingDivergedError(
            f"The training loss became {loss} (NaN/Inf) in the steps before step {step}; "
            f"training stopped. {kept} Try a lower --learning_rate (now "
            f"{self.config.learning_rate}), a warmup (--warmup_epochs) or "
            "--precision=float32.")

    def _log_images(self, step):
        """At the start of a logged epoch, logs a grid of augmented training images taken
        from a pipeline of its own (a batch per logged epoch): the training iterator is not
        advanced, so a run trains on the same examples with or without --log_images, on
        every worker."""
        setup = self.setup
        if not (self.config.log_images and setup.chief and step % setup.spe == 0
                and step // setup.spe in tb.image_epochs(setup.num_epochs)):
            return
        batches = setup.train_input.input_fn(tf.distribute.InputContext())
        nth = sorted(tb.image_epochs(setup.num_epochs)).index(step // setup.spe)
        images, labels = next(iter(batches.skip(nth)))  # other images at each logged epoch
        tb.log_training_images(self.writers, images.numpy(), labels.numpy(),
                               setup.class_names, step)

    # -------------------------------------------------------------- epoch ends
    def _run_eval(self):
        if self.evaluate_fn is None:
            return None
        ema = self.state.task.ema
        if ema is not None:
            with ema.swapped_in():
                sums, confusion = self.evaluate_fn(self.dist_eval)
        else:
            sums, confusion = self.evaluate_fn(self.dist_eval)
        return {**train_steps.mean_metrics(sums), "confusion": confusion.numpy()}

    def end_of_epoch(self, epoch, train_metrics, images_per_second):
        """Evaluates, saves best.keras, checkpoints (with this epoch's metrics row inside)
        and rewrites metrics.csv from the checkpointed rows."""
        setup, state = self.setup, self.state
        step = int(state.global_step.numpy())
        if step >= setup.total_steps and self.config.refit_head:
            setup.refit_head(state)
        ev = None
        if self.evaluate_fn is not None and (epoch % self.config.eval_every_epochs == 0
                                             or step >= setup.total_steps):
            ev = self.last_eval = self._run_eval()
            if setup.chief:
                tb.log_confusion_matrix(self.writers, ev["confusion"], setup.class_names,
                                        step)
        if ev is not None and ev["top1"] > float(state.best_top1.numpy()):
            state.best_top1.assign(ev["top1"])
            state.best_epoch.assign(epoch)
            self.saved_model.save(state.task, setup.files.best)
        elif ev is None and self.evaluate_fn is None:  # no validation: the latest is the best
            self.saved_model.save(state.task, setup.files.best)
            state.best_epoch.assign(epoch)
        state.evaluated_epoch.assign(epoch)
        tb.epoch_scalars(self.writers, epoch, step, train_metrics, ev,
                         float(state.best_top1.numpy()), setup.baseline_top1())
        row = {"epoch": epoch, "step": step, "learning_rate": state.task.learning_rate(),
               "wall_seconds": self.clock[1] + time.time() - self.clock[0],
               "images_per_second": images_per_second}
        if train_metrics is not None:
            row.update(train_loss=train_metrics["loss"], train_top1=train_metrics["top1"],
                       train_top5=train_metrics["top5"])
        if ev is not None:
            row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
        state.metrics_history.append(row)
        self.save_checkpoint(step)
        setup.write_metrics_csv(state.metrics_history)
        setup.console.epoch_end(row)

    # ----------------------------------------------------------------- outputs
    def _finish(self, images_per_second) -> run_record.RunSummary:
        cfg, setup, state, files = self.config, self.setup, self.state, self.setup.files
        state.wall_seconds.assign(self.clock[1] + time.time() - self.clock[0])
        ev = self.last_eval
        if ev is None and self.evaluate_fn is not None:
            ev = self._run_eval()
        saved = self.saved_model.current(state.task)
        prof = profile_model(saved)
        self.saved_model.save(state.task, files.final)
        if not os.path.exists(files.best):
            self.saved_model.save(state.task, files.best)
        inputs = [inp for inp in (setup.train_input, setup.eval_input) if inp is not None]
        summary = run_record.RunSummary(
            top1=ev["top1"] if ev else None, top5=ev["top5"] if ev else None,
            loss=ev["loss"] if ev else None, eval_examples=ev["count"] if ev else 0,
            eval_split=cfg.eval_split or None, params=prof.params,
            mult_adds=prof.mult_adds, keras_params=int(saved.count_params()),
            images_per_second=images_per_second,
            wall_seconds=float(state.wall_seconds.numpy()), epochs=cfg.epochs,
            steps=int(state.global_step.numpy()),
            optimizer_steps=int(state.task.optimizer.iterations.numpy()),
            best_checkpoint=os.path.abspath(files.best),
            best_top1=float(state.best_top1.numpy()) if ev else None,
            best_epoch=int(state.best_epoch.numpy()),
            final_checkpoint=os.path.abspath(files.final), ema=state.task.ema is not None,
            num_replicas=setup.strategy.num_replicas_in_sync,
            bad_images=sum(_bad_count(inp) for inp in inputs),
            baseline_top1=setup.baseline_top1() if ev else None)
        if setup.chief:
            with writing(files.summary):
                run_record.write_summary(files.workdir, summary)
            tb.end_session(self.writers.logdir, "success")
            examples = [e for inp in inputs
                        for e in getattr(getattr(inp, "bad_images", None), "examples", [])]
            setup.console.say(reporting.report_text(
                summary, files.workdir, cfg.eval_split, getattr(cfg.data, "dataset", None),
                examples))
        return summary


def _bad_count(inp):
    return int(getattr(getattr(inp, "bad_images", None), "count", 0) or 0)
