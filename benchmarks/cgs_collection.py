"""How much does building a Core Gradient Space cost compared with one plain pass over the data?

Collecting the CGS is one forward pass in eval mode with hooks that add each protected layer's
RᵀR to a float64 accumulator. The goal: "collection ≤ 1.5× a plain no-grad forward pass over the
same data". This script measures that ratio, for both product precisions and the
sketched mode (``row_fraction``, a quarter of the rows by default, with the share of the exact top-k
energy it keeps), against the FLOP floor (forward + one triangle of every Gram), on:

* the digits CNN (``SmallCNNForImageClassification``) on the 1438 digits training examples;
* a ViT-base-shaped image classifier (64×64 images, patch 16: 17 tokens per image) on random images;
* a BERT-base-shaped sequence classifier on random token ids (batches of 8 × 128 tokens).

Why it is set up this way:

* Both sides see the *same* pre-built list of batches and the same ``default_forward``, so data
  loading is not measured and the difference is hooks + Gram products + final copies.
* Plain and collection runs are interleaved (the order rotates every repeat) and the ratio is taken
  per repeat from runs that ran side by side, then the median is reported: on a shared 2-core
  machine the load drifts, and adjacent runs see about the same drift. The ratio of the fastest
  runs is printed too: other processes only ever add time, so the two together show how much the
  machine's load moved the result.
* The transformer models run 4 of their 12 encoder layers by default (``--vit-layers``/
  ``--bert-layers`` restore them) to keep the run short. Every encoder layer is identical, so the
  ratio barely depends on depth: only the embeddings, the pooler and the head do not scale with it.
* ``--threads 1 --clock cpu`` measures process CPU time instead of wall time: the robust choice
  when other jobs share the machine (see docs/performance.md).
* The "Gram ÷ layer FLOPs" column is the arithmetic reason behind the numbers: a layer with input
  width d and output width o costs 2·d·o FLOPs per row in the forward pass but 2·d² FLOPs per row in
  RᵀR. Wide-input layers (BERT's FFN output, 3072 → 768) make the Gram dearer than the layer itself.

Run: ``.venv/bin/python benchmarks/cgs_collection.py`` (about 1.5 min on a quiet 2-core machine,
3-6 min when other jobs load it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from hf_unlearn.core import collect_gram_matrices, find_protectable_layers, layer_kind
from hf_unlearn.core.covariance import default_forward
from hf_unlearn.core.layers import LINEAR, TRANSPOSED_LINEAR, input_rows, layer_info

PRECISIONS = ("float64", "float32")
# collection modes beside the plain pass: exact float64 / float32 products, and the sketched mode (float32)
MODES = ("float64", "float32", "sketch")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def now() -> float:
    """The timer in use: wall clock (default) or this process's CPU time (``--clock cpu``).

    CPU time is the robust choice on a machine other jobs share: time spent waiting for a core
    does not count. Use it with ``--threads 1``; with several threads it also counts spin-waiting.
    """
    return _clock[0]()


def set_clock(name: str) -> None:
    _clock[0] = CLOCKS[name]


@dataclass
class Workload:
    """A model and the exact batches both timed passes will see."""

    name: str
    model: nn.Module
    batches: list[dict]
    note: str
    examples: int = field(init=False)

    def __post_init__(self) -> None:
        self.examples = sum(next(iter(b.values())).shape[0] for b in self.batches)


# --------------------------------------------------------------------------- workloads
def digits_workload(batch_size: int, device: torch.device) -> Workload:
    """The library's demo model on the full digits training split, batched as the trainer would."""
    from hf_unlearn.data.builtin import load_digits_dataset
    from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

    torch.manual_seed(0)
    model = SmallCNNForImageClassification(SmallCNNConfig()).to(device)
    train = load_digits_dataset()["train"].with_format("torch")
    pixels, labels = train["pixel_values"], train["labels"]
    batches = [
        {
            "pixel_values": pixels[i : i + batch_size].to(device),
            "labels": labels[i : i + batch_size].to(device),
        }
        for i in range(0, len(labels), batch_size)
    ]
    return Workload("digits CNN", model, batches, f"{len(labels)} digits, batch {batch_size}, 1×8×8")


def vit_model(num_layers: int, device: torch.device) -> nn.Module:
    """ViT-base widths (768 hidden, 12 heads, 3072 FFN) on 64×64 images: 16 patches + CLS."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=64,
        patch_size=16,
        num_channels=3,
        hidden_size=768,
        num_hidden_layers=num_layers,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=10,
    )
    return ViTForImageClassification(config).to(device)


def vit_batches(num_batches: int, batch_size: int, device: torch.device) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [
        {
            "pixel_values": torch.randn(batch_size, 3, 64, 64, generator=g).to(device),
            "labels": torch.randint(0, 10, (batch_size,), generator=g).to(device),
        }
        for _ in range(num_batches)
    ]


def bert_model(num_layers: int, device: torch.device) -> nn.Module:
    """BertConfig() defaults (BERT-base: 768 hidden, 12 heads, 3072 FFN, 30522 vocabulary)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_hidden_layers=num_layers, num_labels=2)).to(device)


def bert_batches(num_batches: int, batch_size: int, seq_len: int, device: torch.device) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    return [
        {
            "input_ids": torch.randint(1000, 30522, (batch_size, seq_len), generator=g).to(device),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long).to(device),
            "labels": torch.randint(0, 2, (batch_size,), generator=g).to(device),
        }
        for _ in range(num_batches)
    ]


def transformer_workloads(args, device: torch.device) -> list[Workload]:
    out = []
    if "vit" in args.models:
        note = f"{args.vit_layers} of 12 layers, {args.batches}×{args.vit_batch} images 3×64×64"
        out.append(
            Workload(
                "ViT-base-shaped",
                vit_model(args.vit_layers, device),
                vit_batches(args.batches, args.vit_batch, device),
                note,
            )
        )
    if "bert" in args.models:
        note = f"{args.bert_layers} of 12 layers, {args.batches}×({args.bert_batch}×{args.seq_len}) tokens"
        out.append(
            Workload(
                "BERT-base-shaped",
                bert_model(args.bert_layers, device),
                bert_batches(args.batches, args.bert_batch, args.seq_len, device),
                note,
            )
        )
    return out


# --------------------------------------------------------------------------- analysis
def flop_ratio(model: nn.Module, batch: dict) -> float:
    """FLOPs of the Gram products ÷ FLOPs of the protected layers' own matmuls, for one batch.

    Counts a shared input (query/key/value read the same tensor) once, as the collector does.
    """
    layers = find_protectable_layers(model)
    gram_flops, layer_flops = 0.0, 0.0
    last: list = [None]

    def hook(module, args, output):
        nonlocal gram_flops, layer_flops
        rows = input_rows(module, args[0])
        n, d = rows.shape
        out_dim = layer_info(module).weight_shape[1 if layer_kind(module) == TRANSPOSED_LINEAR else 0]
        layer_flops += 2.0 * n * d * out_dim
        shareable = layer_kind(module) in (LINEAR, TRANSPOSED_LINEAR)
        if not (shareable and last[0] is args[0]):
            gram_flops += 2.0 * n * d * d
        if shareable:
            last[0] = args[0]

    handles = [m.register_forward_hook(hook) for m in layers.values()]
    try:
        model.eval()
        with torch.no_grad():
            default_forward(model, batch, None)
    finally:
        for h in handles:
            h.remove()
    return gram_flops / layer_flops


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_plain(workload: Workload, device: torch.device) -> float:
    """A plain no-grad eval-mode pass over the same batches, with the collector's forward function."""
    model = workload.model
    model.eval()
    sync(device)
    start = now()
    with torch.no_grad():
        for batch in workload.batches:
            default_forward(model, batch, None)
    sync(device)
    return now() - start


def collect(workload: Workload, mode: str, row_fraction: float):
    """The public entry point in one of ``MODES``."""
    precision = "float64" if mode == "float64" else "float32"
    fraction = row_fraction if mode == "sketch" else 1.0
    return collect_gram_matrices(workload.model, workload.batches, precision=precision, row_fraction=fraction,
                                 show_progress=False)


def time_collect(workload: Workload, mode: str, device: torch.device, row_fraction: float) -> float:
    """End to end: layer discovery, hooks, products, copies to CPU."""
    sync(device)
    start = now()
    collect(workload, mode, row_fraction)
    sync(device)
    return now() - start


def top_energy_kept(exact: dict, sketch: dict, gamma: float = 0.8) -> float:
    """Worst layer's share of the exact Gram's top-k energy that the sketch's top-k directions capture.

    k is the rank the exact space keeps at ``gamma`` of its singular-value energy (the library default).
    """
    worst = 1.0
    for name, gram in exact.items():
        values, vectors = torch.linalg.eigh(gram)
        sigma = values.clamp(min=0).flip(0).sqrt()
        k = int((sigma.cumsum(0) < gamma * sigma.sum()).sum()) + 1
        top = torch.linalg.eigh(sketch[name]).eigenvectors[:, -k:]
        worst = min(worst, float(torch.trace(top.T @ gram @ top) / values.flip(0)[:k].sum()))
    return worst


def measure(workload: Workload, repeats: int, device: torch.device, row_fraction: float) -> dict:
    """Interleaved repeats; the order of the runs rotates so no mode always goes first."""
    modes = ("plain", *MODES)
    time_plain(workload, device)  # warm-up: allocator, thread pool, lazy inits
    for mode in MODES:
        time_collect(workload, mode, device, row_fraction)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(repeats):
        rotated = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in rotated:
            times[mode].append(
                time_plain(workload, device) if mode == "plain" else time_collect(workload, mode, device, row_fraction)
            )
    result = {"plain": statistics.median(times["plain"])}
    for mode in MODES:
        result[mode] = statistics.median(times[mode])
        result[f"ratio_{mode}"] = statistics.median(c / p for c, p in zip(times[mode], times["plain"]))
        result[f"best_{mode}"] = min(times[mode]) / min(times["plain"])
    result["flop_ratio"] = flop_ratio(workload.model, workload.batches[0])
    result["floor"] = 1.0 + result["flop_ratio"] / 2  # forward + one triangle of every Gram, at the same speed
    exact = collect(workload, "float64", 1.0).grams
    result["energy_kept"] = top_energy_kept(exact, collect(workload, "sketch", row_fraction).grams)
    return result


def markdown_table(rows: list[tuple[Workload, dict]], goal: float) -> str:
    head = (
        "| model | data | plain forward (s) | f64 | f32 | floor | f32 ÷ floor "
        "| sketch | sketch top-k energy | fastest runs f64 / f32 / sketch |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for w, r in rows:
        lines.append(
            f"| {w.name} | {w.note} | {r['plain']:.3f} | {r['ratio_float64']:.2f}× | {r['ratio_float32']:.2f}× "
            f"| {r['floor']:.2f}× | {r['ratio_float32'] / r['floor']:.2f} "
            f"| {r['ratio_sketch']:.2f}× | {r['energy_kept']:.4f} "
            f"| {r['best_float64']:.2f}× / {r['best_float32']:.2f}× / {r['best_sketch']:.2f}× |"
        )
    return "\n".join(lines)


MODELS = ("digits", "vit", "bert")
RAW = argparse.RawDescriptionHelpFormatter


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=RAW)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per model (median reported)")
    parser.add_argument(
        "--digits-repeats", type=int, default=15, help="repeats for the digits CNN (a pass takes ~0.05 s)"
    )
    parser.add_argument("--batches", type=int, default=2, help="batches per pass for ViT and BERT")
    parser.add_argument("--digits-batch", type=int, default=64, help="batch size for the digits CNN")
    parser.add_argument("--vit-batch", type=int, default=32, help="images per ViT batch (17 tokens each)")
    parser.add_argument("--vit-layers", type=int, default=4, help="ViT encoder layers (base has 12)")
    parser.add_argument("--bert-batch", type=int, default=8, help="sequences per BERT batch")
    parser.add_argument("--bert-layers", type=int, default=4, help="BERT encoder layers (base has 12)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per BERT sequence")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the dev machine has 2 cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="wall time or process CPU time")
    parser.add_argument("--goal", type=float, default=1.5, help="target ratio (marked ✗ when missed)")
    parser.add_argument("--row-fraction", type=float, default=0.25, help="share of rows the sketched mode keeps")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    device = torch.device(args.device)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    workloads = [digits_workload(args.digits_batch, device)] if "digits" in args.models else []
    workloads += transformer_workloads(args, device)
    rows = []
    for workload in workloads:
        print(f"measuring {workload.name} ({workload.note}) ...", file=sys.stderr, flush=True)
        repeats = args.digits_repeats if workload.name == "digits CNN" else args.repeats
        rows.append((workload, measure(workload, repeats, device, args.row_fraction)))
    print(
        f"\nCGS collection ÷ plain no-grad forward; torch {torch.__version__}, {args.threads} thread(s), "
        f"device {device}, {args.clock} clock, median of {args.repeats} interleaved repeats "
        f"({args.digits_repeats} for digits); "
        "ratio = median of per-repeat ratios; 'fastest runs' = fastest collection ÷ fastest plain pass\n"
    )
    print(markdown_table(rows, args.goal))
    print(f"\nsketch = float32, {args.row_fraction:g} of the rows; floor = 1 + (Gram ÷ layer FLOPs) / 2; "
          f"total wall time {time.perf_counter() - started:.0f} s")
    load_after = os.getloadavg()[0]
    print(f"1-min load average {load_before:.1f} at start, {load_after:.1f} at end, {os.cpu_count()} CPUs")
    try:  # python -m benchmarks.cgs_collection
        from .results_io import table_from_markdown, write_results
    except ImportError:  # python benchmarks/cgs_collection.py
        from results_io import table_from_markdown, write_results
    default = (args.threads, args.clock, args.device) == (2, "wall", "cpu")
    key = "ratios" if default else f"ratios_{args.device}_{args.clock}_{args.threads}threads"
    notes = (f"sketch = float32, {args.row_fraction:g} of the rows; floor = 1 + (Gram ÷ layer FLOPs) / 2; median of "
             f"{args.repeats} interleaved repeats ({args.digits_repeats} for digits); 1-min load average "
             f"{load_before:.1f} → {load_after:.1f}")
    title = f"Gram collection ÷ a plain no-grad forward pass ({args.threads} threads, {args.clock} clock, {device})"
    results = table_from_markdown(markdown_table(rows, args.goal), title, notes)
    write_results("cgs_collection", {"tables": {key: results}})


if __name__ == "__main__":
    main()
