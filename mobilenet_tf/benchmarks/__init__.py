"""Benchmarks: ``python -m mobilenet_tf.benchmarks.<name>``."""
