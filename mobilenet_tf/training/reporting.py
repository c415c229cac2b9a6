"""What a run shows and leaves besides checkpoints and TensorBoard: ``metrics.csv``, the
end-of-run report, and the console progress.

``metrics.csv`` is never appended to: it is rewritten atomically from the per-epoch rows
kept in the checkpoint (``checkpointing.MetricsHistory``) after each epoch and on resume,
so it always matches the checkpoint the run continues from.

Console (``Console``): on a terminal with ``--verbose=1``, one progress bar redrawn in
place and one line per epoch; otherwise (a log file, a pipe) plain lines only: one per
epoch and, with ``--verbose=1``, a step line every ``step_interval`` seconds; no carriage
returns or escape codes. ``--verbose=2``: epoch lines only; 0: nothing.
"""

from __future__ import annotations

import csv
import io
import sys
import time

from mobilenet_tf import fileio
from mobilenet_tf.rundir.record import RunSummary

METRICS_COLUMNS = ("epoch", "step", "train_loss", "train_top1", "train_top5", "val_loss",
                   "val_top1", "val_top5", "learning_rate", "images_per_second",
                   "wall_seconds")


def metrics_csv_text(rows) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=METRICS_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRICS_COLUMNS})
    return out.getvalue()


def write_metrics_csv(path: str, rows) -> None:
    fileio.atomic_write_text(path, metrics_csv_text(rows))


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def epoch_line(row: dict, num_epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{num_epochs}"]
    if row.get("train_loss") is not None:
        parts.append(f"loss {row['train_loss']:.4f} top1 {pct(row['train_top1'])}")
    if row.get("val_loss") is not None:
        parts.append(f"val_loss {row['val_loss']:.4f} val_top1 {pct(row['val_top1'])} "
                     f"val_top5 {pct(row['val_top5'])}")
    parts.append(f"lr {row['learning_rate']:.3g}")
    if row.get("images_per_second"):
        parts.append(f"{row['images_per_second']:.0f} img/s")
    parts.append(f"{row['wall_seconds']:.0f}s")
    return " | ".join(parts)


class Console:
    """Progress and messages on stdout (see the module docstring)."""

    BAR = 24

    def __init__(self, verbose: int, num_epochs: int, stream=None, interactive=None,
                 step_interval: float = 30.0, enabled: bool = True):
        self.stream = stream or sys.stdout
        self.verbose = verbose if enabled else 0
        self.enabled = enabled
        self.num_epochs = num_epochs
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.step_interval = step_interval
        self._bar_width = 0
        self._last_step_line = time.monotonic()

    def say(self, text: str) -> None:
        if self.verbose:
            self._clear_bar()
            print(text, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """A message shown at any verbosity (on stderr): fallbacks, take-overs."""
        if self.enabled:
            self._clear_bar()
            print(text, file=sys.stderr, flush=True)

    def progress(self, epoch: int, done: int, steps: int, values: dict) -> None:
        """``done`` of ``steps`` steps of 1-based ``epoch``; values: loss, top1, lr."""
        if self.verbose != 1:
            return
        stats = (f"loss {values['loss']:.4f} top1 {pct(values['top1'])} "
                 f"lr {values['lr']:.3g}")
        if self.interactive:
            filled = int(self.BAR * done / max(steps, 1))
            bar = "=" * filled + (">" if filled < self.BAR else "") + "." * (
                self.BAR - filled - 1)
            text = f"epoch {epoch}/{self.num_epochs} [{bar[:self.BAR]}] {done}/{steps} {stats}"
            self.stream.write("\r" + text.ljust(self._bar_width))
            self.stream.flush()
            self._bar_width = len(text)
            return
        now = time.monotonic()
        if now - self._last_step_line >= self.step_interval and done < steps:
            self._last_step_line = now
            print(f"epoch {epoch}/{self.num_epochs} step {done}/{steps} | {stats}",
                  file=self.stream, flush=True)

    def epoch_end(self, row: dict) -> None:
        if self.verbose:
            self.say(epoch_line(row, self.num_epochs))

    def _clear_bar(self):
        if self._bar_width:
            self.stream.write("\r" + " " * self._bar_width + "\r")
            self._bar_width = 0


def baseline_line(top1: float, baseline_top1: float) -> str:
    """What fine-tuning bought, on the same held-out photos."""
    return (f"Fine-tuned {pct(top1)}, head-only baseline {pct(baseline_top1)}, "
            f"{100 * (top1 - baseline_top1):+.1f} points.")


def report_text(s: RunSummary, workdir: str, eval_split: str, dataset: str | None,
                bad_examples=()) -> str:
    """The end-of-run report: results, where the models are, what to run next."""
    weights = "EMA weights" if s.ema else "final weights"
    lines = [f"\nTraining complete: {s.epochs:g} epochs, {s.steps} steps, "
             f"{s.wall_seconds:.0f}s"
             + (f", {s.images_per_second:.0f} images/s." if s.images_per_second else ".")]
    if s.top1 is not None:
        lines.append(f"Validation ({eval_split}, {s.eval_examples} images, {weights}): "
                     f"top-1 {pct(s.top1)}, top-5 {pct(s.top5)}, loss {s.loss:.4f}")
        if s.baseline_top1 is not None:
            lines.append(baseline_line(s.top1, s.baseline_top1))
        lines.append(f"Best model: {s.best_checkpoint} (epoch {s.best_epoch}, "
                     f"top-1 {pct(s.best_top1)})")
    lines.append(f"Final model: {s.final_checkpoint}")
    if s.bad_images:
        lines.append(f"Skipped {s.bad_images} unreadable images (--bad_images=skip), "
                     f"e.g. {', '.join(list(bad_examples)[:3])}.")
    eval_cmd = f"python -m mobilenet_tf.evaluate --model={workdir}"
    if dataset:
        eval_cmd += f" --dataset={dataset}"
        if eval_split:
            eval_cmd += f" --split='{eval_split}'"
    lines += ["Next:", f"  tensorboard --logdir {workdir}", f"  {eval_cmd}",
              f"  python -m mobilenet_tf.export --workdir={workdir}"]
    return "\n".join(lines)
