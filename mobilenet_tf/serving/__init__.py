"""Serving: the exporter (SavedModel, TFLite with metadata), its config, the export
report and the atomic staging of the export directory."""
