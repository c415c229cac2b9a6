"""What every command line shares: flags checked before TensorFlow is imported, help
grouped by topic, one-line usage errors, and TensorFlow's log lines kept off the console.

The command lines are the top-level modules ``train``, ``evaluate``, ``export``, ``predict``
and ``profile``, each run as ``python -m mobilenet_tf.NAME``. The command ``profile`` prints
what the function ``mobilenet_tf.profile`` counts; TensorFlow's profiler is a flag of
``train`` (``--profile_steps``).

A command line defines its flags with ``define`` (a topic per flag), checks them in
``main`` and imports its TensorFlow modules only then, with ``load``::

    _MODEL = cli.define("model", flags.DEFINE_string, "model", None, "...", required=True)

    def main(argv):
        ...                                  # a bad value: raise cli.UsageError(...)
        evaluation = cli.load("mobilenet_tf.inference.evaluation")

    if __name__ == "__main__":
        cli.run(main, __doc__)

Flags that several commands share are defined once: here (``MODEL_FORMS``,
``check_model_path``, ``check_dataset``) and, for the commands that open a trained model,
in ``mobilenet_tf.model_flags``.

Exit status: 0 done; 1 a bad flag or argument (``error: ...`` and ``see: ... --help`` on
stderr, nothing else); any other failure is one ``error:`` line with the status that
``failures.describe`` gives it (docs/training.md, "Exit status"); ``--debug`` adds the
traceback.

Quiet by default: ``TF_CPP_MIN_LOG_LEVEL=3`` is set before TensorFlow is imported (it
silences the C++ INFO/WARNING/ERROR lines, e.g. ``failed call to cuInit`` on a machine
without a GPU), and ``load``/``quiet_native_stderr`` divert what native code writes to
stderr while TensorFlow loads or the TFLite converter runs (``oneDNN custom operations are
on``, ``All log messages before absl::InitializeLog()``, MLIR pass output); that text is
shown if the block fails. ``--verbosity=0`` (or higher), or a user's ``TF_CPP_MIN_LOG_LEVEL``
of 0 or 1, shows everything; 2 or 3 stays quiet (never overridden); ``quiet`` says which.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import textwrap
import warnings

from absl import flags
from absl import logging as absl_logging

from mobilenet_tf.options import TOPICS

FLAGS = flags.FLAGS
EXIT_USAGE = 1
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
_GENERAL = ("flagfile", "verbosity", "debug", "help", "helpfull")
_WIDTH = 88

_group_of: dict[str, str] = {}  # flag name -> topic, for the flags of this program
_required: list[str] = []
# A TF_CPP_MIN_LOG_LEVEL set by the user is theirs to decide: it is never overridden.
user_tf_log_level = os.environ.get(TF_LOG_ENV)


def asks_for_quiet(level: str | None) -> bool:
    """Whether a TF_CPP_MIN_LOG_LEVEL (None: unset) asks for the quiet default: unset, 2 or
    3; 0 and 1 show TensorFlow's lines, its start-up lines included."""
    return level is None or level.strip() in ("2", "3")


# Whether native stderr is diverted (``quiet_native_stderr``); ``configure_logging`` sets it.
quiet = asks_for_quiet(user_tf_log_level)

flags.DEFINE_bool("help", False, "Show this help: the flags of this command, by topic.",
                  short_name="h")
flags.DEFINE_bool("debug", False, "On a failure, print the Python traceback before the "
                  "one-line message (exit statuses: docs/training.md, \"Exit status\").")
flags.DEFINE_bool("helpfull", False, "Show this help and the flags of the libraries "
                  "(absl) after it.")
FLAGS["verbosity"].help = (
    "-1 (default): quiet, warnings and errors only, no TensorFlow C++ log lines; 0: also "
    "INFO messages and every TensorFlow/converter log line; 1: debug. A "
    f"{TF_LOG_ENV}=0 or 1 in the environment also shows them (2 or 3 does not).")
# absl handles --flagfile itself (it is not in FLAGS); its entry in --help:
_FLAGFILE_HELP = ["  --flagfile=FILE", textwrap.fill(
    "Read flags from FILE (one --name=value per line, # comments); a flag after it on the "
    "command line overrides the file.", _WIDTH, initial_indent=" " * 6,
    subsequent_indent=" " * 6)]


class UsageError(Exception):
    """A bad flag value or argument: printed as one ``error:`` line, exit status 1."""


def define(group: str, definer, name: str, *args, required=False, **kwargs):
    """``definer(name, *args, **kwargs)`` (an ``absl.flags.DEFINE_*``: default, [enum
    values,] help) under the --help topic ``group``; ``required``: checked after --help
    is handled."""
    if group not in TOPICS:
        raise ValueError(f"flag --{name}: unknown help topic {group!r}; one of {TOPICS}")
    holder = definer(name, *args, **kwargs)
    _group_of[name] = group
    if required:
        _required.append(name)
    return holder


def mark_required(name: str) -> None:
    """--name must be given (checked after --help is handled)."""
    if name not in _required:
        _required.append(name)


def define_fields(fields, definers: dict, skip=()) -> list:
    """One flag per dataclass field (name, default, ``metadata`` help and group); returns
    the fields defined. ``definers``: {type name: absl DEFINE_*}."""
    out = []
    for field in fields:
        if field.name in skip:
            continue
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if kind not in definers:
            raise TypeError(f"no flag type for {field.name}: {kind}")
        help_text, group = field.metadata.get("help"), field.metadata.get("group")
        if not help_text or not group:
            raise ValueError(f"field {field.name} has no help text or group in its metadata")
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        define(group, definers[kind], field.name, default, help_text)
        out.append(field)
    return out


# ----------------------------------------------------------------------------- help
def _default_text(flag) -> str:
    value = flag.default
    if flag.name in _required:
        return "required"
    if value is None:
        return ""
    if isinstance(value, bool):
        return f"default: {str(value).lower()}"
    if isinstance(value, (list, tuple)):
        return f"default: {','.join(str(v) for v in value)}"
    if value == "":
        return "default: ''"
    return f"default: {value}"


def _flag_help(flag) -> list[str]:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    if flag.short_name:
        name += f", -{flag.short_name}"
    text = flag.help or ""
    values = getattr(flag.parser, "enum_values", None)
    if values and not all(v in text for v in values):
        text += f" One of: {', '.join(values)}."
    default = _default_text(flag)
    head = f"  {name}  ({default})" if default else f"  {name}"
    body = textwrap.fill(text, _WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return [head, body]


def help_text(doc: str, full: bool = False) -> str:
    """The command's docstring, then its flags by topic (``full``: then the library
    flags)."""
    lines = [textwrap.dedent(doc or "").strip(), ""]
    by_topic = {t: [] for t in TOPICS}
    for name, group in _group_of.items():
        by_topic[group].append(name)
    by_topic["general"] += list(_GENERAL)
    for topic in TOPICS:
        if by_topic[topic]:
            lines.append(f"{topic}:")
            for name in by_topic[topic]:
                lines += _FLAGFILE_HELP if name == "flagfile" else _flag_help(FLAGS[name])
            lines.append("")
    if full:
        ours = set(_group_of) | set(_GENERAL)
        lines.append("library flags (absl):")
        for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
            for flag in module_flags:
                if flag.name not in ours:
                    lines.append(f"  --{flag.name}  [{module}]")
                    lines.append(textwrap.fill(" ".join((flag.help or "").split()), _WIDTH,
                                               initial_indent=" " * 6,
                                               subsequent_indent=" " * 6))
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- running
def program() -> str:
    """``python -m mobilenet_tf.NAME`` as the user typed it (for messages)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name}"
    return os.path.basename(sys.argv[0] or "mobilenet_tf")


def usage_exit(message: str) -> None:
    """Prints ``error: MESSAGE`` and where the help is; exits with status 1."""
    message = " ".join(str(message).split()) or "invalid command line"
    message = re.sub(r"^ERROR:+\s*", "", message)  # absl's flagfile errors
    print(f"error: {message}\nsee: {program()} --help", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


def parse(argv, doc: str = "") -> list[str]:
    """Parses ``argv`` into FLAGS (--help prints ``doc`` and the flags; a flag error
    exits with the usage message); returns the arguments left (``argv[0]`` first)."""
    try:
        rest = FLAGS(list(argv))
    except flags.Error as err:
        usage_exit(str(err))
    if FLAGS.help or FLAGS.helpfull:
        print(help_text(doc, full=FLAGS.helpfull), end="")
        sys.exit(0)
    missing = [n for n in _required if FLAGS[n].value in (None, "", [])]
    if missing:
        usage_exit(f"--{missing[0]} is required: {FLAGS[missing[0]].help}")
    configure_logging()
    return rest


def configure_logging() -> None:
    """Quiet (the default) or verbose (``--verbosity`` >= 0) logging, Python and C++."""
    global quiet
    verbosity = FLAGS.verbosity if FLAGS["verbosity"].present else absl_logging.WARNING
    absl_logging.set_verbosity(verbosity)
    verbose = verbosity >= absl_logging.INFO
    if user_tf_log_level is None:
        os.environ[TF_LOG_ENV] = "0" if verbose else "3"
    quiet = asks_for_quiet(user_tf_log_level) and not verbose
    if not verbose:  # said by tf.data whenever a strategy distributes a dataset: not ours
        warnings.filterwarnings("ignore", category=UserWarning,
                                message="To make it possible to preserve tf.data options")


def run(main, doc: str = "", argv=None) -> None:
    """Parses the flags, then calls ``main(args)``; a ``UsageError`` from it becomes the
    short usage message, any other exception its one line and exit status
    (``failures.describe``). Exits with ``main``'s return value."""
    args = parse(sys.argv if argv is None else argv, doc)
    try:
        status = main(args)
    except UsageError as err:
        usage_exit(str(err))
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as err:  # noqa: BLE001 - every failure gets its one line
        fail(err)
    sys.exit(status or 0)


def fail(err: BaseException) -> None:
    """Prints ``err`` as one ``error:`` line (its traceback first with --debug) and exits
    with its status (``failures.describe``)."""
    import traceback

    from mobilenet_tf import failures

    message, status = failures.describe(err)
    if FLAGS.is_parsed() and FLAGS.debug:
        traceback.print_exception(err)
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(status)


@contextlib.contextmanager
def quiet_native_stderr():
    """Diverts file descriptor 2 (where C++ libraries log) to a temporary file for the
    block, unless logging is verbose; the text is written to stderr if the block raises."""
    if not quiet:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
    except OSError:  # no file descriptors or no temp dir: do not hide anything
        yield
        return
    ok = False
    try:
        os.dup2(capture.fileno(), 2)
        yield
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if not ok:
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()
        capture.close()


def quiet_litert_banner(model_path: str) -> None:
    """LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` once per
    process, when its first interpreter allocates its tensors, whatever the log level: do
    that first for ``model_path`` (a .tflite) with stderr diverted."""
    if not quiet or not model_path.endswith(".tflite") or not os.path.isfile(model_path):
        return
    with quiet_native_stderr():
        try:
            from ai_edge_litert.interpreter import Interpreter

            Interpreter(model_path=model_path).allocate_tensors()
        except Exception:  # noqa: BLE001  (opening it for real reports what is wrong)
            pass


def load(module: str):
    """Imports ``module`` (one that imports TensorFlow) without TensorFlow's start-up
    lines on stderr."""
    with quiet_native_stderr():
        return importlib.import_module(module)


# ----------------------------------------------------------------------------- shared flags
MODEL_FORMS = "a run directory, a .keras file, an exported SavedModel directory or a .tflite file"


# ----------------------------------------------------------------------------- checks


def check_model_path(path: str, flag: str = "--model", forms: str = MODEL_FORMS) -> None:
    """UsageError unless ``path`` exists (the format is checked when it is opened)."""
    if not os.path.exists(path):
        raise UsageError(f"{flag}={path} does not exist; give {forms}")


def check_dataset(spec: str, flag: str = "--dataset") -> None:
    """UsageError for a malformed ``--dataset`` or a local folder/tfrecord source with no
    files (tfds datasets and remote paths such as gs:// are checked when opened)."""
    import glob

    from mobilenet_tf.data.specs import SPLIT_PLACEHOLDER, parse_dataset_spec

    try:
        parsed = parse_dataset_spec(spec)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if parsed.kind not in ("folder", "tfrecord") or "://" in parsed.path:
        return
    if parsed.kind == "folder" and not os.path.isdir(parsed.path):
        raise UsageError(f"{flag}={spec}: folder {parsed.path} does not exist (expected "
                         "PATH/<class>/<image> or PATH/<split>/<class>/<image>)")
    if (parsed.kind == "tfrecord" and SPLIT_PLACEHOLDER not in parsed.path
            and not os.path.isdir(parsed.path) and not glob.glob(parsed.path)):
        raise UsageError(f"{flag}={spec}: no files match {parsed.path}")


def check_output_dir(path: str, flag: str = "--workdir") -> None:
    """Refuses, before anything is written, an output folder that cannot be one: a file,
    a path under a file (UsageError), or one this user may not create or write in
    (``OutputWriteError``, exit status 7)."""
    from mobilenet_tf.rundir.errors import OutputWriteError

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag}={path} is a file; give a folder (a new one, or a run to "
                         "resume)")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag}={path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in it" if existing == os.path.abspath(path) else f"create it in {existing}"
        raise OutputWriteError(f"{flag}={path}: this user may not {what} (permission "
                               f"denied); fix the permissions or choose another {flag}.")
