"""Benchmark flag parsing that imports nothing heavy (no TensorFlow, no Keras), so that
benchmarks running on other Keras backends (``keras_backend``) can use it."""

from __future__ import annotations


def parse_settings(text: str, flag: str = "--settings") -> list[tuple[int, int]]:
    """'128:64,224:32' -> [(128, 64), (224, 32)] (resolution:batch pairs)."""
    pairs = []
    for item in [t for t in text.split(",") if t.strip()]:
        try:
            res, batch = (int(v) for v in item.split(":"))
        except ValueError:
            res = batch = 0
        if res < 32 or batch < 1:
            raise ValueError(f"{flag}={text!r} is not valid: {item!r} must be RESOLUTION:"
                             "BATCH with resolution >= 32 and batch >= 1, e.g. 128:64,224:32")
        pairs.append((res, batch))
    if not pairs:
        raise ValueError(f"{flag}={text!r} is not valid: give at least one RESOLUTION:BATCH")
    return pairs
