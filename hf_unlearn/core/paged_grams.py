"""Hold a space's Grams in a file-backed mapping while the weights move, instead of in anonymous memory.

Once a request's projectors are made, no step reads the Grams until the run ends (the ledger's fingerprint,
saving the space). Written once to a file that is removed at once, and mapped back, they become clean file pages:
not resident until read, and the kernel may drop them again under pressure. On SmolLM2-135M that takes the space's
768 MiB of float64 off the steps' peak; writing them costs a second or two. The values are the same bits, shared
tensors stay shared, and a later in-place write copies only the pages it touches.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def page_out(tensors: dict[str, object], directory: str | Path) -> dict[str, object] | None:
    """``tensors`` with every dense tensor mapped from a file written in ``directory``; None where that cannot be
    done (not a POSIX system, nothing dense, the disk refused), and the caller keeps its own."""
    dense = {name: value for name, value in tensors.items() if isinstance(value, torch.Tensor)}
    if os.name != "posix" or not dense:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=".cgs-grams-", suffix=".pt", dir=directory)
        os.close(handle)
        try:
            torch.save(dense, path)
            mapped = torch.load(path, mmap=True, weights_only=True)
        finally:
            os.unlink(path)  # the mapping keeps the file's blocks until the tensors go; nothing is left behind
    except (OSError, RuntimeError) as error:
        logger.warning("The Core Gradient Space's Grams stay in memory while the weights move: writing them to %s "
                       "failed (%s).", directory, error)
        return None
    size = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in dense.values()}.values())
    logger.info("The Core Gradient Space's Grams (%.0f MiB) are mapped from a file in %s while the weights move.",
                size / 2**20, directory)
    return {name: mapped.get(name, value) for name, value in tensors.items()}


def mapped_from_file(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s memory is a file mapping (Linux: read from ``/proc/self/maps``; False elsewhere)."""
    start = tensor.untyped_storage().data_ptr()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                if low <= start < high:
                    return len(fields) == 6 and fields[5].startswith("/")
    except OSError:
        pass
    return False
