"""Timing tf.data pipelines against each other: alternating rounds, medians."""

from __future__ import annotations

import dataclasses
import statistics
import time


@dataclasses.dataclass
class Result:
    name: str
    images_per_second: list
    cpu_images_per_second: list

    @property
    def median(self):
        return statistics.median(self.images_per_second)

    @property
    def cpu_median(self):
        return statistics.median(self.cpu_images_per_second)


def time_pipelines(pipelines: dict, batch_size: int, batches: int, rounds: int):
    """Alternating rounds; each round opens a fresh iterator, warms it up, times
    ``batches`` batches and closes it, so no pipeline runs (or fills its buffers) in the
    background while another one is timed."""
    import gc
    results = {k: Result(k, [], []) for k in pipelines}
    for _ in range(rounds):
        for k, ds in pipelines.items():
            it = iter(ds)
            for _ in range(max(5, batches // 3)):  # fill buffers, let autotuning settle
                next(it)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                next(it)
            n = batches * batch_size
            results[k].images_per_second.append(n / (time.perf_counter() - wall))
            results[k].cpu_images_per_second.append(n / (time.process_time() - cpu))
            del it
            gc.collect()
    return results
