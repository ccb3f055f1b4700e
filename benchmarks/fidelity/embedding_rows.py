"""The default path with and without free input-embedding rows (``free_embedding_rows``), on the text scenarios.

    .venv/bin/python -m benchmarks.fidelity.embedding_rows      # runs what is missing, then writes the table

Each variant is the fidelity suite's default path (``pgu_retain``) with ``free_embedding_rows`` on (the default)
or off, in its own folder under ``outputs/fidelity_embedding_rows/``; originals and references come from the
suite's caches. Writes ``benchmarks/results/fidelity_embedding_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch
import transformers

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from . import run as suite
from .scenarios import ALL_SCENARIOS

JOBS = {"warriner_electra_random": (0, 1), "warriner_electra_random1": (0, 1), "trec_minilm_random": (0, 1),
        "trec_minilm_user": (0, 1), "sms_minilm_random": (0,)}
CACHES = {"warriner": "outputs/fidelity_words_cache", "trec": "outputs/fidelity_trec_cache",
          "sms": "outputs/fidelity_default_cache"}
VARIANTS = {"on": {}, "off": {"free_embedding_rows": False}}
KEYS = ("UA", "RA", "TA", "MIA")


def _run_missing(folder: Path) -> dict:
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.ERROR)
    results = {}
    for variant, overrides in VARIANTS.items():
        path = folder / variant / "results.json"
        done = json.loads(path.read_text()) if path.is_file() else {}
        for name, seeds in JOBS.items():
            for seed in seeds:
                if str(seed) in done.get(name, {}):
                    continue
                print(f"{name} seed {seed}, free rows {variant}", flush=True)
                cache = Path(CACHES[name.split("_")[0]])
                done.setdefault(name, {})[str(seed)] = suite.run_scenario(
                    ALL_SCENARIOS[name], seed, ["pgu_retain"], cache, folder / variant, overrides or None
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(done, indent=1))
        results[variant] = done
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_embedding_rows")
    results = _run_missing(Path(parser.parse_args(argv).out))
    rows = []
    for name in JOBS:
        for seed, run in results["on"][name].items():
            reference = run["rows"]["reference"]
            cells = []
            for variant in VARIANTS:
                row = results[variant][name][seed]["rows"]["pgu_retain"]
                deltas = "/".join(f"{row[k] - reference[k]:+.1f}" for k in KEYS)
                cells += [f"{row['gap']:.2f} ({deltas})", f"{row['time']:.1f}"]
            tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
            rows.append([f"{name} ({tuned})", seed, f"{run['rows']['reference_2']['gap']:.2f}",
                         f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
    means = {v: statistics.fmean(results[v][n][s]["rows"]["pgu_retain"]["gap"] for n in JOBS for s in results[v][n])
             for v in VARIANTS}
    columns = ["scenario", "seed", "floor", "do nothing", "free rows: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)",
               "frozen table: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
    print(markdown_table(columns, rows))
    write_results("fidelity_embedding_rows", {"tables": {"runs": table(
        columns, rows, title="Default path with the free input-embedding rows and with the table frozen (Avg. Gap)",
        notes=f"Mean Avg. Gap over the rows: {means['on']:.2f} with the free rows, {means['off']:.2f} without.",
    )}})


if __name__ == "__main__":
    main()
