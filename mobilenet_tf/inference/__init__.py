"""Inference on trained models: loading any saved form (run directory, .keras,
SavedModel, .tflite) as one classifier, evaluation, prediction, and reading the TFLite
metadata of a .tflite."""
