"""Keep Accelerate's start-of-training garbage collection from scanning the whole heap.

``Trainer.train()`` calls ``accelerator.free_memory()``, which runs ``gc.collect()``. With torch,
transformers and datasets imported, that is a full scan of about a million long-lived objects
(0.27 s measured on the CI machine) — more than a small unlearning request takes. Freezing the heap
for the duration of training limits collections to objects created since; nothing frozen is
freed early, and ``gc.unfreeze()`` hands everything back afterwards.

``release_freed_memory`` returns the heap memory glibc keeps after large frees to the system.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    already_frozen = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not already_frozen:
            gc.unfreeze()


def release_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the system (glibc only; elsewhere nothing happens).

    glibc keeps freed heap memory for reuse: once a request's forget Grams, differences and decompositions are
    gone it holds about 1.8 GB of them on SmolLM2-135M (returning them lowers the run's peak by about 110 MB:
    the steps reuse the rest). ``malloc_trim`` walks the heap once; it costs milliseconds.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return
    trim(0)
