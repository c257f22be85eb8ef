"""Large buffers go back to the system as soon as they are freed.

glibc serves an allocation of 128 KiB or more with its own mmap and unmaps it on
free, but only until the first such buffer is freed: it then raises the
threshold to that size (up to 32 MiB) and serves later large buffers from the
heap, which it keeps. A server that now and then takes a message of tens of MiB
then keeps each freed copy of it resident, and the next copies land beside
them: one 25 MiB encrypted message raised the serve process tree by 183 MiB
against 135 MiB with the threshold held (bench/smtp_throughput.py, issue 15).
The threshold is held at 1 MiB rather than glibc's initial 128 KiB: the buffers
of a 10 KiB message's path (TLS records, stream buffers) stay on the heap, where
mapping and zeroing them for every message cost the serve process 0.5 ms a
message (25 % of its CPU), while every copy of a large message is mapped. The
environment variable carries the setting to the worker processes, whose glibc
reads it at start-up; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os

THRESHOLD = 1024 * 1024  # bytes: below, the heap; above, a mapping of its own
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def return_large_buffers() -> bool:
    """Hold glibc's mmap threshold for this process and the ones it starts; True if set."""
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError):
        return False  # not glibc
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(THRESHOLD))
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD))
