"""Two real processes on CPU (gloo) through ``torch.distributed.run``, for the multi-process tests.

``accelerate launch --cpu --num_processes 2`` starts a single process; ``torch.distributed.run --nproc_per_node 2``
starts two. ``--standalone`` lets the rendezvous take a free port (fixed ports failed a run now and then).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPTS = Path(__file__).parent / "scripts"


def launch_two_ranks(args, *, env: dict[str, str] | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    """Run ``args`` (a script and its arguments) as two ranks and fail the test with their stderr if either fails.

    Each rank gets one intra-op thread (two ranks share a small machine) and the repository on ``PYTHONPATH``
    (scripts import ``hf_unlearn`` and the test fixtures); ``env`` adds or overrides variables.
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "PYTHONPATH": path,
                   **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *map(str, args)]
    result = subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
