"""The default path under one set of ``UnlearningArguments`` overrides, over (scenario, seed) jobs, resumable:
what the side-by-side fidelity benchmarks (``targets.py``, ``embedding_rows.py``) run for each of their columns."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import transformers

from . import run as suite
from .scenarios import ALL_SCENARIOS

# others: the default suite's families
CACHES = {"animal": "outputs/fidelity_mem_cache", "animal10k": "outputs/fidelity_mem_cache",
          "trec": "outputs/fidelity_trec_cache", "warriner": "outputs/fidelity_words_cache"}


def cache_of(name: str) -> Path:
    """Where a scenario's original and references are cached (shared with the suite's runs of that family)."""
    return Path(CACHES.get(name.split("_")[0], "outputs/fidelity_default_cache"))


def run_missing(folder: Path, jobs: Iterable[tuple[str, int]], overrides: dict,
                range_references: Callable[[str], int] = lambda name: 0) -> dict:
    """``pgu_retain`` with ``overrides`` for every job not yet in ``folder/results.json``; returns every result."""
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.ERROR)
    path = folder / "results.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    for name, seed in jobs:
        if str(seed) in done.get(name, {}):
            continue
        print(f"{name} seed {seed}, {overrides}", flush=True)
        done.setdefault(name, {})[str(seed)] = suite.run_scenario(
            ALL_SCENARIOS[name], seed, ["pgu_retain"], cache_of(name), folder, overrides or None,
            range_references=range_references(name),
        )
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(done, indent=1))
    return done


def gap_cell(row: dict, reference: dict) -> str:
    """A run's Avg. Gap with each metric's difference from the first reference: "2.31 (-4.0/-0.4/+1.0/-3.5)"."""
    deltas = "/".join(f"{row[k] - reference[k]:+.1f}" for k in suite.KEYS)
    return f"{row['gap']:.2f} ({deltas})"
