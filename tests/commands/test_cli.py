"""The command lines: flags checked before TensorFlow is imported, one-line usage errors
that name the flag, help grouped by topic without foreign flags, quiet native stderr.

The subprocess tests here never import TensorFlow (they are about a second each)."""

import os
import subprocess
import sys

import pytest

from mobilenet_tf import cli
from helpers import REPO

CLIS = ("train", "evaluate", "export", "predict", "profile", "weights")
QUICKSTART = os.path.join(REPO, "experiments", "quickstart.cfg")
# No TF_CPP_MIN_LOG_LEVEL of the caller: the command lines' own default is tested.
ENV = {k: v for k, v in os.environ.items() if k != cli.TF_LOG_ENV}
ENV["PYTHONPATH"] = REPO


def _run(name, *args, timeout=120):
    """Runs ``python -X importtime -m mobilenet_tf.NAME ARGS``: the import log (stderr)
    says whether TensorFlow was imported; returns (process, stderr without it)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"mobilenet_tf.{name}",
                           *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    imported = [l for l in proc.stderr.splitlines() if l.startswith("import time:")]
    assert not any(l.split("|")[-1].strip() == "tensorflow" for l in imported), (
        f"{name} {args} imported TensorFlow")
    return proc, "\n".join(l for l in proc.stderr.splitlines()
                           if not l.startswith("import time:"))


@pytest.mark.parametrize("name, args, flag, valid", [
    ("train", [f"--flagfile={QUICKSTART}", "--workdir=/tmp/unused", "--batch_size=0"],
     "--batch_size", ">= 1"),
    ("train", [f"--flagfile={QUICKSTART}", "--workdir=/tmp/unused",
               "--dataset=folder:/nonexistent"], "--dataset", "does not exist"),
    ("train", [f"--flagfile={QUICKSTART}", "--workdir=/tmp/unused", "--optimizer=adamax"],
     "--optimizer", "rmsprop"),
    ("train", [f"--flagfile={QUICKSTART}", "--workdir=/tmp/unused", "--bad_images=ignore"],
     "--bad_images", "skip"),
    ("train", [f"--flagfile={QUICKSTART}"], "--workdir", "required"),
    ("train", ["--workdir=/tmp/unused", "--batch_size=many"], "--batch_size", "int"),
    ("train", ["--workdir=/tmp/unused", "--batchsize=3"], "batchsize", "batch_size"),
    ("train", ["--flagfile=/no/such.cfg", "--workdir=/tmp/unused"], "flagfile", "/no/such.cfg"),
    ("evaluate", ["--model=runs/missing", "--dataset=synthetic"], "--model",
     "a run directory"),
    ("evaluate", ["--model=.", "--dataset=imagenet"], "--dataset", "tfds:NAME"),
    ("evaluate", ["--model=.", "--dataset=synthetic", "--split=train[:"], "--split",
     "NAME[a%:b%]"),
    ("evaluate", ["--dataset=synthetic"], "--model", "required"),
    ("export", ["--workdir=runs/missing"], "--workdir", "run directory"),
    ("export", ["--workdir=.", "--quantize=int4"], "--quantize", "float16"),
    ("export", ["--workdir=.", "--verification_images=0"], "--verification_images", ">= 1"),
    ("predict", ["--model=runs/missing", "x.jpg"], "--model", "a run directory"),
    ("predict", ["--model=.", "--top_k=0", "x.jpg"], "--top_k", ">= 1"),
    ("predict", ["--model=."], "IMAGE_OR_DIR", "at least one"),
    ("profile", ["--alpha=-1"], "--alpha", "> 0"),
    ("profile", ["--resolution=16"], "--resolution", ">= 32"),
    ("profile", ["--variant=huge"], "--variant", "mobilenet"),
    ("weights", ["--alpha=0.3", "out.weights.h5"], "--alpha", "Keras publishes"),
    ("weights", ["--resolution=100", "out.weights.h5"], "--resolution", "Keras publishes"),
    ("weights", ["out.h5"], "OUT", ".weights.h5"),
    ("weights", [], "OUT", "one OUT file"),
    ("weights", ["--from_tflite=/no/such.tflite", "out.weights.h5"], "--from_tflite",
     "no such file"),
])
def test_usage_error_is_short_and_names_the_flag(name, args, flag, valid):
    proc, stderr = _run(name, *args)
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("error: ") and flag in lines[0] and valid in lines[0], stderr
    assert lines[1] == f"see: python -m mobilenet_tf.{name} --help"
    assert proc.stdout == ""


@pytest.mark.parametrize("name", CLIS)
def test_help_is_grouped_and_free_of_foreign_flags(name):
    proc, stderr = _run(name, "--help")
    assert proc.returncode == 0 and stderr == "", stderr
    text = proc.stdout
    assert f"python -m mobilenet_tf.{name}" in text  # the usage line of the docstring
    topics = [l[:-1] for l in text.splitlines() if l.endswith(":") and l[:-1] in cli.TOPICS]
    assert topics == sorted(topics, key=cli.TOPICS.index) and "general" in topics
    assert len(topics) >= 3
    shown = {l.split()[0].replace("[no]", "").rstrip(",").split("=")[0][2:]
             for l in text.splitlines() if l.startswith("  --")}
    foreign = {"logtostderr", "alsologtostderr", "log_dir", "test_srcdir", "pdb",
               "hbm_oom_exit", "tt_check_filter", "op_conversion_fallback_to_while_loop",
               "run_with_profiling", "only_check_args", "undefok"}
    assert not shown & foreign, shown & foreign
    assert {"flagfile", "verbosity", "help", "helpfull"} <= shown
    # every flag has a description (an indented line under its name)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  --"):
            assert lines[i + 1].startswith("      ") and lines[i + 1].strip(), line


def test_train_help_covers_every_option_with_its_topic():
    import dataclasses

    from mobilenet_tf.training import config as train_config
    from mobilenet_tf.data.config import DataConfig

    proc, _ = _run("train", "--help")
    sections, topic = {}, None
    for line in proc.stdout.splitlines():
        if line.endswith(":") and line[:-1] in cli.TOPICS:
            topic = line[:-1]
        elif line.startswith("  --") and topic:
            name = line.split()[0].replace("--[no]", "--").rstrip(",")
            sections[name[2:]] = topic
    fields = [f for f in dataclasses.fields(train_config.TrainConfig) if f.name != "data"]
    fields += [f for f in dataclasses.fields(DataConfig)
               if f.name not in train_config.DERIVED_DATA_FIELDS]
    for f in fields:
        assert sections.get(f.name) == f.metadata["group"], f.name
    assert sections["workdir"] == "output" and sections["verbosity"] == "general"


def test_helpfull_lists_ours_first_then_the_library_flags():
    proc, _ = _run("evaluate", "--helpfull")
    text = proc.stdout
    assert proc.returncode == 0
    assert text.index("--model") < text.index("library flags") < text.index("--logtostderr")


def test_quiet_native_stderr_hides_output_and_shows_it_on_failure(capfd, monkeypatch):
    monkeypatch.setattr(cli, "quiet", True)
    with cli.quiet_native_stderr():
        os.write(2, b"I0000 native chatter\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError):
        with cli.quiet_native_stderr():
            os.write(2, b"E0000 the reason it failed\n")
            raise RuntimeError("conversion failed")
    assert "E0000 the reason it failed" in capfd.readouterr().err
    os.write(2, b"after\n")  # the real stderr is back
    assert capfd.readouterr().err == "after\n"
    monkeypatch.setattr(cli, "quiet", False)  # --verbosity=0 or a user TF_CPP_MIN_LOG_LEVEL
    with cli.quiet_native_stderr():
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_verbosity_and_user_log_level_decide_quietness(monkeypatch):
    from absl import logging as absl_logging

    monkeypatch.setattr(cli, "quiet", cli.quiet)  # restored afterwards
    monkeypatch.setattr(cli, "user_tf_log_level", None)
    monkeypatch.delenv(cli.TF_LOG_ENV, raising=False)
    verbosity = absl_logging.get_verbosity()
    try:
        cli.FLAGS(["prog"])
        cli.configure_logging()
        assert os.environ[cli.TF_LOG_ENV] == "3" and cli.quiet
        cli.FLAGS(["prog", "--verbosity=0"])
        cli.configure_logging()
        assert os.environ[cli.TF_LOG_ENV] == "0" and not cli.quiet
        cli.FLAGS.unparse_flags()
        monkeypatch.setattr(cli, "user_tf_log_level", "1")
        monkeypatch.setenv(cli.TF_LOG_ENV, "1")
        cli.FLAGS(["prog"])
        cli.configure_logging()
        assert os.environ[cli.TF_LOG_ENV] == "1" and not cli.quiet  # the user's choice
    finally:
        cli.FLAGS.unparse_flags()
        absl_logging.set_verbosity(verbosity)


def test_an_option_in_no_help_topic_is_refused():
    from mobilenet_tf.options import TOPICS, option

    with pytest.raises(ValueError, match="valid groups"):
        option(1, "help text", "nonsense")
    assert option(1, "help text", TOPICS[0]).metadata == {"help": "help text",
                                                         "group": TOPICS[0]}
