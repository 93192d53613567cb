"""Shared benchmark helpers: medians of repeats, peak memory of a call in a fresh process, tables."""
from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _child(queue, setup, fn):
    inputs = setup()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    fn(*inputs)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds, (peak - base) / 1024))  # ru_maxrss is in KiB on Linux


def peak_memory_mb(setup, fn) -> tuple[float, float]:
    """Run ``fn(*setup())`` in a fresh process; return (seconds, peak RSS growth in MiB over the inputs).

    ``setup`` and ``fn`` must be importable top-level functions (the process is spawned)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, setup, fn))
    p.start()
    result = q.get()
    p.join()
    return result


def format_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """An aligned plain-text table (also valid Markdown)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    out = ([f"\n{title}\n"] if title else []) + [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in cells])
