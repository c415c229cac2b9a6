"""One-off scripts behind measurements in docs/results.md, run as
``python -m mobilenet_tf.tools.<name>``; the recipes (flagfiles) stay in experiments/."""
