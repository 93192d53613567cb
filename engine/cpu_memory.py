"""Peak CPU memory of a call, from ``torch.profiler`` allocation events, without the profiler's chatter.

``torch.profiler`` with ``profile_memory=True`` records every allocation and free of the call;
the peak is the maximum of their running sum, i.e. the most bytes alive at once on top of what
existed before. Kineto prints start/stop lines (and, without a GPU, a device-count error) from
C++ straight to file descriptor 2 when a profile starts and stops, once per measured module; both
moments run with that descriptor pointed at /dev/null (``KINETO_LOG_LEVEL`` does not reach them).
"""
from __future__ import annotations

import contextlib
import os
import sys

import torch

__all__ = ["cpu_peak_bytes", "quiet_fd2"]


@contextlib.contextmanager
def quiet_fd2():
    """Point file descriptor 2 (C/C++ stderr) at /dev/null for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_bytes(step) -> int:
    """Most bytes of CPU memory alive at once during ``step()`` (allocated within it)."""
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with quiet_fd2():
        prof.start()
    try:
        step()
    finally:
        with quiet_fd2():
            prof.stop()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak
