"""Your own photos end to end, as README's "Train on your own photos" runs them: a flat
folder of class folders (no split folders), fine-tuned from a weights file with the
schedule's flags, evaluated without --split (every image) and with --split=validation
(the held-out 10%), exported to int8 TFLite and used by predict."""

import json
import os
import subprocess
import sys

import keras

from mobilenet_tf.model.builder import mobilenet_v1
from helpers import CLASSES, REPO, write_image_folder
from train_helpers import toy_task

ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", *args], env=ENV, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


def test_flat_folder_train_evaluate_export_predict(tmp_path):
    photos = str(tmp_path / "photos")
    write_image_folder(photos, per_class=20, seed=1)  # photos/<class>/*.jpg
    weights = str(tmp_path / "pre.weights.h5")
    keras.utils.set_random_seed(0)  # a "pretrained" network: fitted a little on a toy task
    # (moving statistics that follow its few steps: with Keras' 0.99 they stay near their
    # start, and in inference mode the deep features of every photo are then the same)
    pretrained = mobilenet_v1((32, 32, 3), alpha=0.25, num_classes=7, bn_momentum=0.8)
    pretrained.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    pretrained.fit(*toy_task(256, 32, 7, seed=3), batch_size=32, epochs=1, verbose=0)
    pretrained.save_weights(weights)
    run = str(tmp_path / "run")
    out = _cli("mobilenet_tf.train", "--flagfile=experiments/finetune.cfg",
               f"--dataset=folder:{photos}", f"--initial_weights={weights}",
               "--alpha=0.25", "--resolution=32", "--epochs=2", "--batch_size=9",
               f"--workdir={run}", "--verbose=2", "--nolog_images")
    assert "loaded" in out and "Batch norm: statistics measured on 54 training" in out
    assert "Head-only baseline (logistic regression on the frozen features of 54" in out
    assert "Classifier: started from the head-only baseline (LP-FT)." in out
    assert "Classifier refitted on the trained network's features of 54 whole" in out
    assert "Fine-tuned " in out and "points." in out
    every = json.loads(_cli("mobilenet_tf.evaluate", f"--model={run}",
                            f"--dataset=folder:{photos}", "--json").splitlines()[-1])
    assert every["num_images"] == 20 * len(CLASSES) and every["split"] == "all"
    held = json.loads(_cli("mobilenet_tf.evaluate", f"--model={run}",
                           f"--dataset=folder:{photos}", "--split=validation",
                           "--json").splitlines()[-1])
    assert held["num_images"] == 2 * len(CLASSES)  # --holdout_fraction=0.1 per class
    _cli("mobilenet_tf.export", f"--workdir={run}", "--formats=tflite", "--quantize=int8",
         "--representative_images=12", "--verification_images=12", "--latency_runs=1")
    model = os.path.join(run, "export", "model_int8.tflite")
    image = os.path.join(photos, CLASSES[0], os.listdir(os.path.join(photos, CLASSES[0]))[0])
    line = _cli("mobilenet_tf.predict", f"--model={model}", image).strip().splitlines()[-1]
    assert line.startswith(image + ": ") and any(c in line for c in CLASSES)
