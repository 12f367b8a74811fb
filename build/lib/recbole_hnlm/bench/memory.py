"""Peak memory of one run inside a long benchmark process.

Resident memory (RSS) is what is read, because torch allocates tensors outside Python's allocator, where
``tracemalloc`` does not see them. ``resource.getrusage().ru_maxrss`` is the process's peak since it started and
cannot be reset, so in a process that runs many cells it would report the largest run so far. On Linux the
peak (``VmHWM``) is reset before each run by writing 5 to ``/proc/self/clear_refs``; elsewhere ``ru_maxrss`` is
used, with that caveat. On CUDA the peak of torch's allocator is read as well.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb(resettable: bool) -> float:
    if resettable:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


@contextmanager
def peak_memory() -> Iterator[dict[str, float | None]]:
    """Yield a dict that holds ``peak_rss_mb`` and ``peak_gpu_mb`` (None without CUDA) once the block ends."""
    reading: dict[str, float | None] = {}
    resettable = _reset_peak_rss()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        yield reading
    finally:
        reading["peak_rss_mb"] = round(_peak_rss_mb(resettable), 1)
        reading["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
