"""Serving: the exporter (SavedModel, TFLite conversion and its metadata writer), its
config, the export report and the atomic staging of the export directory."""
