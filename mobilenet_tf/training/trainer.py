"""Training and evaluation of MobileNet v1 under any tf.distribute strategy: the loop.

``train_and_evaluate(config, workdir)`` is the library entry point (``mobilenet_tf.train``
is its thin command line). One custom loop serves every strategy (one device, mirrored
GPUs, multi-worker, TPU): ``strategy.run`` inside a ``tf.function`` that runs
``steps_per_loop`` steps per call, over ``strategy.distribute_datasets_from_function``.
(Keras' ``model.fit`` fails under MultiWorkerMirroredStrategy in Keras 3,
keras-team/keras#20585.)

The parts: ``train_config`` (the options), ``train_task`` (model, optimizer, schedule,
loss, weight average), ``train_steps`` (the step functions), ``checkpointing`` (verified
saves, restore with fallback), ``rundir`` (the run directory and its record),
``runlock`` (one trainer per run directory), ``run_outputs`` (metrics.csv, console,
report) and ``tensorboard_logging``. What a resumed run restores and refuses is in
docs/training.md ("Resuming").
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import keras
import tensorflow as tf

from mobilenet_tf.training import (checkpointing, finetune, reporting,
                                   steps as train_steps, task as train_task,
                                   tensorboard_logging as tb)
from mobilenet_tf.rundir import record as run_record
from mobilenet_tf.model.costs import profile_model
from mobilenet_tf.rundir.errors import (  # noqa: F401  (re-exported)
    OutputWriteError, Preempted, ResumeRefused, RunError, RunLocked, TrainingDivergedError,
    writing)
from mobilenet_tf.rundir.lock import RunLock
from mobilenet_tf.training.config import (  # noqa: F401  (re-exported)
    DERIVED_DATA_FIELDS, PRECISIONS, TrainConfig, flags_text)
from mobilenet_tf.training.setup import RunSetup, build_inputs  # noqa: F401


def is_complete(workdir: str, epochs: float) -> bool:
    """Whether ``workdir`` holds a run that finished ``epochs`` epochs."""
    summary = run_record.read_summary(workdir)
    return summary is not None and summary.epochs >= epochs


def train_and_evaluate(config: TrainConfig, workdir: str, train_input=None, eval_input=None):
    """Trains ``config`` into ``workdir`` (resuming from it when it holds a checkpoint) and
    returns the summary dict (also written to summary.json).

    ``train_input`` / ``eval_input`` default to ``build_inputs(config)``; tests and
    benchmarks may pass any object with ``class_names``, ``num_examples`` and
    ``input_fn(input_context) -> tf.data.Dataset`` as ``data.build_input`` returns.
    Raises a ``RunError`` (its ``exit_code`` is the command line's) when the run stops.
    """
    config.validate()
    summary = run_record.read_summary(workdir)
    if summary is not None and summary.epochs >= config.epochs:
        if config.verbose:
            print(f"The run in {workdir} is already complete ({summary.epochs:g} epochs, "
                  f"top-1 {reporting.pct(summary.top1)}); nothing to do. Use a new "
                  "--workdir, or raise --epochs to train further.", flush=True)
        return summary.to_dict()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return Trainer(config, workdir, train_input, eval_input).run()
    finally:
        keras.config.set_dtype_policy(previous_policy)


class Trainer(RunSetup):
    """One training run into ``workdir``; ``train_and_evaluate`` is the usual way in.

    After ``run()``, ``model`` is the trained (raw, not averaged) model, ``history`` the
    (optimizer step, mean training loss) and ``timing`` the (images, wall seconds,
    process CPU seconds) of every training loop call of this process (the first call
    includes tracing).
    """

    def run(self) -> dict:
        """Trains to ``config.epochs``; returns the summary dict."""
        lock = RunLock(self.files.workdir, self.console.warn) if self.chief else None
        try:
            if lock:
                lock.acquire()
            return self._run()
        except TrainingDivergedError:
            if self.chief:
                tb.end_session(self.writers.logdir, "failure")
            raise
        except (OSError, tf.errors.OpError) as err:
            if checkpointing.is_disk_full(err):
                where = getattr(err, "filename", None) or self.files.workdir
                raise OutputWriteError(
                    f"No space left on the device of {where} "
                    f"({checkpointing._first_line(err)}); free some space and run the same "
                    "command to resume from the last checkpoint.") from err
            raise
        finally:
            if lock:
                lock.release()

    def _run(self) -> dict:
        t_start = time.time()
        self.prepare()  # resume checks, model, restore, run record (trainer_setup)
        self.clock = (t_start, float(self.wall_seconds.numpy()))
        step = int(self.global_step.numpy())
        dist_train = self.strategy.distribute_datasets_from_function(self.train_input.input_fn)
        iterator = iter(dist_train)
        self.dist_eval = (self.strategy.distribute_datasets_from_function(
            self.eval_input.input_fn) if self.eval_input is not None else None)
        self.evaluate_fn = (train_steps.make_eval_loop(self.strategy, self.model,
                                                       self.num_classes)
                            if self.eval_input is not None else None)
        if self.chief:
            tb.write_model_graph(self.writers, self.model, self.config.resolution,
                                 self.console.warn)
        self.profiler = tb.Profiler(self.writers, self.config.parsed_profile_steps())
        self.graph = tb.GraphTrace(self.writers)
        self.last_eval = None
        self.throughput = [0.0, 0]  # seconds, images (after the first, tracing, call)
        stop = _SigtermFlag()
        try:
            # An epoch whose last step ran but whose end (eval, checkpoint) did not; the
            # last epoch may be partial (fractional --epochs).
            ended = self.num_epochs if step >= self.total_steps else step // self.spe
            if step and ended > int(self.evaluated_epoch.numpy()):
                self._end_of_epoch(ended, None, None)
            while step < self.total_steps:
                if self._images_due(step):
                    self._log_images(step)
                train_metrics, ips = self._train_epoch(iterator, step, stop)
                step = int(self.global_step.numpy())
                self._end_of_epoch(-(-step // self.spe), train_metrics, ips)
        finally:
            stop.restore()
            self.profiler.close()
            try:
                self.writers.flush()
            finally:
                self.writers.close()  # also on errors: no open files left in the run
                if self.scratch_dir:  # a non-chief worker's checkpoints are not kept
                    shutil.rmtree(self.scratch_dir, ignore_errors=True)
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
        return [finetune.head_steps(self.config.freeze_backbone_epochs, self.spe)]

    def _train_function(self, step: int):
        phase = self.phase_for_step(step)
        if getattr(self, "_compiled", None) is None or self._compiled[0] != phase:
            task, cfg = self.task, self.config
            if phase is not None:  # trainability is read when the step is traced
                finetune.set_phase(task.model, phase, cfg.freeze_bn, cfg.frozen_blocks)
                if phase == finetune.WHOLE and cfg.freeze_backbone_epochs:
                    self.console.say(finetune.switch_message(
                        step // self.spe + 1, cfg.backbone_lr_scale, cfg.freeze_bn,
                        cfg.frozen_blocks))
            updates, objective = task.updates, task.phase_objective()

            def replica_step(images, labels):
                return train_steps.train_step(task.model, updates, objective,
                                              images, labels)

            step_fn = (tf.function(replica_step, jit_compile=True)
                       if cfg.jit_compile else replica_step)
            self._compiled = (phase, train_steps.make_train_loop(
                self.strategy, step_fn, self.global_step, task.ema))
        return self._compiled[1]

    def _train_epoch(self, iterator, step, stop):
        """Trains from ``step`` to the end of its epoch; (mean metrics, images/s)."""
        cfg, spe = self.config, self.spe
        epoch = step // spe  # 0-based
        epoch_end = min((epoch + 1) * spe, self.total_steps)
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
            lr = self.task.learning_rate()
            tb.train_scalars(self.writers, mean, lr, n * cfg.batch_size / dt, step / spe, step)
            self.console.progress(epoch + 1, step - epoch * spe, epoch_end - epoch * spe,
                                  {"loss": mean["loss"], "top1": mean["top1"], "lr": lr})
            if step % cfg.checkpoint_every_steps == 0 and step != epoch_end:
                self._save(step)
            if stop.flag:
                raise self._preempted(step)
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

    def _save(self, step):
        self.wall_seconds.assign(self.clock[1] + time.time() - self.clock[0])
        return self.store.save(step)

    def _preempted(self, step):
        """SIGTERM: checkpoint now, except in a multi-worker cluster, where saving is a
        collective that the other workers (not signalled) would not join; there the
        run resumes from the last periodic checkpoint."""
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            saved = f"the latest checkpoint is {self.store.latest_path}"
        else:
            self._save(step)
            saved = f"saved a checkpoint at step {step} in {self.files.checkpoints}"
        return Preempted(f"SIGTERM received: {saved}; run the same command to resume.")

    def _diverged(self, step, out):
        latest = self.store.latest_path
        kept = (f"The last good checkpoint, {latest}, is kept; re-running resumes from it."
                if latest else "No checkpoint had been written yet.")
        loss = train_steps.mean_metrics(out)["loss"]
        raise TrainingDivergedError(
            f"The training loss became {loss} (NaN/Inf) in the steps before step {step}; "
            f"training stopped. {kept} Try a lower --learning_rate (now "
            f"{self.config.learning_rate}), a warmup (--warmup_epochs) or "
            "--precision=float32.")

    def _images_due(self, step):
        return (self.config.log_images and self.chief and step % self.spe == 0
                and step // self.spe in tb.image_epochs(self.num_epochs))

    def _log_images(self, step):
        """Logs a grid of augmented training images taken from a pipeline of its own (a
        batch per logged epoch): the training iterator is not advanced, so a run trains on
        the same examples with or without --log_images, on every worker."""
        batches = self.train_input.input_fn(tf.distribute.InputContext())
        nth = sorted(tb.image_epochs(self.num_epochs)).index(step // self.spe)
        images, labels = next(iter(batches.skip(nth)))  # other images at each logged epoch
        tb.log_training_images(self.writers, images.numpy(), labels.numpy(),
                               self.class_names, step)

    # -------------------------------------------------------------- epoch ends
    def _run_eval(self):
        if self.evaluate_fn is None:
            return None
        ema = self.task.ema
        if ema is not None:
            with ema.swapped_in():
                sums, confusion = self.evaluate_fn(self.dist_eval)
        else:
            sums, confusion = self.evaluate_fn(self.dist_eval)
        return {**train_steps.mean_metrics(sums), "confusion": confusion.numpy()}

    def _end_of_epoch(self, epoch, train_metrics, images_per_second):
        """Evaluates, saves best.keras, checkpoints (with this epoch's metrics row inside)
        and rewrites metrics.csv from the checkpointed rows."""
        step = int(self.global_step.numpy())
        ev = None
        if self.evaluate_fn is not None and (epoch % self.config.eval_every_epochs == 0
                                             or step >= self.total_steps):
            ev = self.last_eval = self._run_eval()
            if self.chief:
                tb.log_confusion_matrix(self.writers, ev["confusion"], self.class_names,
                                        step)
        if ev is not None and ev["top1"] > float(self.best_top1.numpy()):
            self.best_top1.assign(ev["top1"])
            self.best_epoch.assign(epoch)
            self._save_keras(self.files.best)
        elif ev is None and self.evaluate_fn is None:
            self._save_keras(self.files.best)  # no validation: the latest is the best
            self.best_epoch.assign(epoch)
        self.evaluated_epoch.assign(epoch)
        tb.epoch_scalars(self.writers, epoch, step, train_metrics, ev,
                         float(self.best_top1.numpy()))
        row = {"epoch": epoch, "step": step, "learning_rate": self.task.learning_rate(),
               "wall_seconds": self.clock[1] + time.time() - self.clock[0],
               "images_per_second": images_per_second}
        if train_metrics is not None:
            row.update(train_loss=train_metrics["loss"], train_top1=train_metrics["top1"],
                       train_top5=train_metrics["top5"])
        if ev is not None:
            row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
        self.metrics_history.append(row)
        self._save(step)
        self.write_metrics_csv()
        self.console.epoch_end(row)

    # ----------------------------------------------------------------- outputs
    def _export_model(self) -> keras.Model:
        """The model saved in best/final.keras: float32, plain batch norm, softmax output,
        with the current (EMA when on) weights."""
        if not hasattr(self, "_saved_model"):
            self._saved_model = train_task.saved_model_for(self.config, self.num_classes)
        ema = self.task.ema
        values = (ema.averaged_values() if ema is not None
                  else [w.numpy() for w in self.model.weights])
        self._saved_model.set_weights(values)
        return self._saved_model

    def _save_keras(self, path):
        if not self.chief:
            return
        model = self._export_model()
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp.keras")
        try:
            with writing(path):
                model.save(tmp)
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _finish(self, images_per_second) -> run_record.RunSummary:
        cfg, files = self.config, self.files
        self.wall_seconds.assign(self.clock[1] + time.time() - self.clock[0])
        ev = self.last_eval
        if ev is None and self.evaluate_fn is not None:
            ev = self._run_eval()
        saved = self._export_model()
        prof = profile_model(saved)
        self._save_keras(files.final)
        if not os.path.exists(files.best):
            self._save_keras(files.best)
        summary = run_record.RunSummary(
            top1=ev["top1"] if ev else None, top5=ev["top5"] if ev else None,
            loss=ev["loss"] if ev else None, eval_examples=ev["count"] if ev else 0,
            eval_split=cfg.eval_split or None, params=prof.params,
            mult_adds=prof.mult_adds, keras_params=int(saved.count_params()),
            images_per_second=images_per_second,
            wall_seconds=float(self.wall_seconds.numpy()), epochs=cfg.epochs,
            steps=int(self.global_step.numpy()),
            optimizer_steps=int(self.task.optimizer.iterations.numpy()),
            best_checkpoint=os.path.abspath(files.best),
            best_top1=float(self.best_top1.numpy()) if ev else None,
            best_epoch=int(self.best_epoch.numpy()),
            final_checkpoint=os.path.abspath(files.final), ema=self.task.ema is not None,
            num_replicas=self.strategy.num_replicas_in_sync,
            bad_images=_bad_count(self.train_input) + _bad_count(self.eval_input))
        if self.chief:
            with writing(files.summary):
                run_record.write_summary(files.workdir, summary)
            tb.end_session(self.writers.logdir, "success")
            examples = [e for inp in (self.train_input, self.eval_input) if inp is not None
                        for e in getattr(getattr(inp, "bad_images", None), "examples", [])]
            self.console.say(reporting.report_text(
                summary, files.workdir, cfg.eval_split, getattr(cfg.data, "dataset", None),
                examples))
        return summary


def _bad_count(inp):
    bad = getattr(inp, "bad_images", None) if inp is not None else None
    return int(getattr(bad, "count", 0) or 0)


class _SigtermFlag:
    """Turns SIGTERM into a flag the loop checks between calls (main thread only)."""

    def __init__(self):
        self.flag = False
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self.previous = None

    def _handle(self, signum, frame):
        self.flag = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
