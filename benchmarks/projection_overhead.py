"""What does protecting the Core Gradient Space add to one training step?

PGU projects the *applied update* of every protected layer, not its gradient (AdamW rescales
gradients per entry and would leak the protected component back in): keep the weights before
``optimizer.step()``, project the difference after it, write the projected weights back. The goal:
"projection adds ≤ 10 % to a training step". This script measures, per step,

* ``step``: zero_grad + forward + backward + ``SGD.step()``, the work a step does anyway;
* ``projection``: the snapshot before the step plus, after it, ``ΔW = W − W_before``,
  ``LayerProjector.project(ΔW)`` and the write-back, over every protected layer;
* ``k = d/2``: the projection alone, timed again on the same updates with every layer at its most
  expensive rank (cost ∝ min(k, d − k) thanks to the complement trick), not written back. This is
  the bound for any γ; the measured ranks depend on γ and on the data.

Why it is set up this way:

* The space is built from the workload's own data with the trainer's defaults (``gamma=0.8``,
  σ-energy), so the ranks are the ones a user would get; the step is timed with the trainer's own
  ``hf_unlearn.protection.ProjectedUpdates``.
* Only the protected weights are trained (biases, norms and embeddings frozen, the trainer's
  default), which makes the step cheaper and the reported overhead the conservative one;
  ``--train-all`` trains every parameter instead.
* ``CoreGradientSpace.projectors()`` (one eigendecomposition per layer) runs once per deletion
  request, not per step: it is reported separately as "setup".
* The first step checks that the written-back update is orthogonal to the space, so the timed code
  is the correct code.
* Transformer depth is reduced by default (2 of 12 encoder layers; ``--vit-layers``/``--bert-layers``
  restore it): every layer adds the same step time and the same projection time, so the ratio
  barely depends on depth, while ``projectors()`` needs one 3072 × 3072 eigendecomposition per
  layer (seconds each on 2 cores).
* "batch for ≤ goal" is the number of examples per optimizer step (batch × gradient accumulation)
  at which the measured projection would add exactly the goal. The projection runs once per
  optimizer step and its cost does not depend on the batch, so it shrinks as 1/batch.

Run: ``.venv/bin/python benchmarks/projection_overhead.py`` (1-2 min on a quiet 2-core machine, up
to 7 min when other jobs load it; ``--threads 1 --clock cpu`` for contention-robust CPU times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from cgs_collection import CLOCKS, bert_batches, bert_model, now, set_clock, vit_batches, vit_model
from results_io import table_from_markdown, write_results
from torch import nn

from hf_unlearn.core import CoreGradientSpace, LayerProjector, collect_gram_matrices
from hf_unlearn.protection import ProjectedUpdates


@dataclass
class Case:
    name: str
    model: nn.Module
    batches: list[dict]
    note: str


def digits_case(batch_size: int) -> Case:
    from hf_unlearn.data.builtin import load_digits_dataset
    from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

    torch.manual_seed(0)
    model = SmallCNNForImageClassification(SmallCNNConfig())
    train = load_digits_dataset()["train"].with_format("torch")
    pixels, labels = train["pixel_values"], train["labels"]
    batches = [
        {"pixel_values": pixels[i : i + batch_size], "labels": labels[i : i + batch_size]}
        for i in range(0, len(labels) - batch_size + 1, batch_size)
    ]
    return Case("digits CNN", model, batches, f"batch {batch_size}, 1×8×8")


def build_cases(args) -> list[Case]:
    cpu = torch.device("cpu")
    cases = [digits_case(args.digits_batch)] if "digits" in args.models else []
    if "vit" in args.models:
        cases.append(
            Case(
                "ViT-base-shaped",
                vit_model(args.vit_layers, cpu),
                vit_batches(args.space_batches, args.vit_batch, cpu),
                f"{args.vit_layers} of 12 layers, batch {args.vit_batch} × 3×64×64",
            )
        )
    if "bert" in args.models:
        cases.append(
            Case(
                "BERT-base-shaped",
                bert_model(args.bert_layers, cpu),
                bert_batches(args.space_batches, args.bert_batch, args.seq_len, cpu),
                f"{args.bert_layers} of 12 layers, batch {args.bert_batch}×{args.seq_len} tokens",
            )
        )
    return cases


def worst_case_projectors(space: CoreGradientSpace) -> dict[str, LayerProjector]:
    """Every layer at k = d/2, where neither the basis nor its complement is the smaller one."""
    return {
        name: LayerProjector.from_eigenbasis(space.eigen(name)[1], info.input_dim // 2, info).to("cpu", torch.float32)
        for name, info in space.layers.items()
    }


class ProjectedSGDStep:
    """One training step the way ``UnlearningTrainer`` runs it, with the trainer's own ``ProjectedUpdates``.

    ``snapshot()`` before ``optimizer.step()``, ``project()`` after it. Only the protected weights
    are trainable unless ``train_all`` (the trainer's default freezes biases, norms and layers the
    space does not protect).
    """

    def __init__(self, model: nn.Module, projection: ProjectedUpdates, lr: float, train_all: bool):
        self.model = model
        self.projection = projection
        self.weights = projection.weights
        self.projectors = projection.projectors
        for p in model.parameters():
            p.requires_grad_(train_all)
        for w in self.weights.values():
            w.requires_grad_(True)
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
        self.last_deltas: dict[str, torch.Tensor] = {}
        model.train()

    def __call__(self, batch: dict, extra: dict[str, LayerProjector] | None = None) -> dict[str, float]:
        t0 = now()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model(**batch).loss
        loss.backward()
        t1 = now()
        self.projection.snapshot()
        t2 = now()
        self.optimizer.step()
        t3 = now()
        # untimed: the raw update, for the orthogonality check and the k = d/2 timing below
        with torch.no_grad():
            self.last_deltas = {n: w - self.projection._before[n] for n, w in self.weights.items()}
        t4 = now()
        self.projection.project()
        t5 = now()
        timings = {"step": (t1 - t0) + (t3 - t2), "projection": (t2 - t1) + (t5 - t4)}
        if extra is not None:  # the same updates, at the most expensive rank (timed, then discarded)
            t6 = now()
            with torch.no_grad():
                for name, delta in self.last_deltas.items():
                    extra[name].project(delta)
            timings["worst"] = now() - t6
        return timings


def check_orthogonal(space: CoreGradientSpace, step: ProjectedSGDStep, batch: dict) -> float:
    """After one real step: the share of the update's protected component that survived.

    ‖(W_after − W_before) M‖ / ‖ΔW_raw M‖ over all layers, with ΔW_raw the update SGD applied before
    the projection. It is not exactly 0 because the weights are float32: W_before + ΔW is rounded.
    """
    before = {n: w.detach().clone() for n, w in step.weights.items()}
    step(batch)
    kept, raw = 0.0, 0.0
    for name, w in step.weights.items():
        basis = space.basis(name)

        def inside(delta: torch.Tensor, name=name, basis=basis) -> float:
            delta = delta.double()
            if step.projectors[name].transposed:
                return (basis.T @ delta).norm().item() ** 2
            return (delta.reshape(delta.shape[0], -1) @ basis).norm().item() ** 2

        kept += inside(w.detach() - before[name])
        raw += inside(step.last_deltas[name])
    return (kept / raw) ** 0.5 if raw > 0 else 0.0


def flop_ratio(space: CoreGradientSpace, num_rows: dict[str, int], num_batches: int) -> float:
    """Matmul FLOPs of one projection ÷ those of the protected layers in one step.

    A projection costs 4·out·d·min(k, d − k) (two thin products) whatever the batch; a step costs
    6·rows·out·d per layer (forward 2, input gradient 2, weight gradient 2). Attention scores,
    norms and activations are left out of the step, so the ratio slightly overstates the overhead.
    """
    projection, step = 0.0, 0.0
    for name, info in space.layers.items():
        d = info.input_dim
        out = info.weight_shape[1] if info.kind == "transposed_linear" else info.weight_shape[0]
        k = space.rank(name)
        projection += 4.0 * out * d * min(k, d - k)
        step += 6.0 * (num_rows[name] / num_batches) * out * d
    return projection / step


def measure(case: Case, args) -> dict:
    started = time.perf_counter()
    stats = collect_gram_matrices(case.model, case.batches, show_progress=False)
    space = CoreGradientSpace(stats.grams, stats.layers, stats.num_examples, gamma=args.gamma)
    t = now()
    projection = ProjectedUpdates.for_layers(case.model, space.projectors())  # what the trainer builds per request
    setup = now() - t
    worst = worst_case_projectors(space)
    step = ProjectedSGDStep(case.model, projection, lr=args.lr, train_all=args.train_all)
    leak = check_orthogonal(space, step, case.batches[0])
    if leak > 1e-2:
        raise AssertionError(f"{case.name}: the projected update leaks {leak:.2e} into the protected space")
    for i in range(args.warmup):
        step(case.batches[i % len(case.batches)])
    runs = [step(case.batches[i % len(case.batches)], extra=worst) for i in range(args.steps)]
    ranks = [space.rank(n) for n in space.layers]
    dims = [info.input_dim for info in space.layers.values()]
    ratio = statistics.median(r["projection"] / r["step"] for r in runs)
    batch_size = next(iter(case.batches[0].values())).shape[0]
    print(f"  {case.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {
        "setup": setup,
        "layers": len(dims),
        "kept": sum(ranks) / sum(dims),
        "leak": leak,
        "step": statistics.median(r["step"] for r in runs),
        "projection": statistics.median(r["projection"] for r in runs),
        "ratio": ratio,
        "fastest": min(r["projection"] for r in runs) / min(r["step"] for r in runs),
        "worst": statistics.median(r["worst"] / r["step"] for r in runs),
        "flops": flop_ratio(space, stats.num_rows, len(case.batches)),
        "batch_for_goal": batch_size * ratio / args.goal,
    }


def markdown_table(rows: list[tuple[Case, dict]], goal: float) -> str:
    lines = [
        "| model | setting | protected layers | Σk ÷ Σd | step (ms) | projection (ms) | added | fastest steps "
        "| added at k = d/2 | FLOPs projection ÷ step | batch for ≤ goal | setup: projectors() (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, r in rows:
        mark = "" if r["ratio"] <= goal else " ✗"
        worst_mark = "" if r["worst"] <= goal else " ✗"
        lines.append(
            f"| {case.name} | {case.note} | {r['layers']} | {r['kept']:.2f} | {1e3 * r['step']:.1f} "
            f"| {1e3 * r['projection']:.2f} | {100 * r['ratio']:.1f} %{mark} | {100 * r['fastest']:.1f} % "
            f"| {100 * r['worst']:.1f} %{worst_mark} "
            f"| {r['flops']:.2f} | {r['batch_for_goal']:.0f} | {r['setup']:.1f} |"
        )
    return "\n".join(lines)


MODELS = ("digits", "vit", "bert")
RAW = argparse.RawDescriptionHelpFormatter


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=RAW)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--space-batches", type=int, default=2, help="batches the space is built from (ViT, BERT)")
    parser.add_argument("--digits-batch", type=int, default=128)
    parser.add_argument("--vit-batch", type=int, default=32)
    parser.add_argument("--vit-layers", type=int, default=2, help="ViT encoder layers (base has 12)")
    parser.add_argument("--bert-batch", type=int, default=8)
    parser.add_argument("--bert-layers", type=int, default=2, help="BERT encoder layers (base has 12)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--gamma", type=float, default=0.8, help="UnlearningArguments.gamma default")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-all", action="store_true", help="train every parameter, not only protected weights")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="wall time or process CPU time")
    parser.add_argument("--goal", type=float, default=0.10, help="target added fraction (marked ✗ when missed)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = []
    for case in build_cases(args):
        print(f"measuring {case.name} ({case.note}) ...", file=sys.stderr, flush=True)
        rows.append((case, measure(case, args)))
    trained = "all parameters" if args.train_all else "protected weights only"
    print(
        "\nProjection of the applied update ÷ training step (forward + backward + SGD); "
        f"torch {torch.__version__}, {args.threads} thread(s), CPU, {args.clock} clock, γ = {args.gamma}, {trained}, "
        f"median of {args.steps} steps\n"
    )
    print(markdown_table(rows, args.goal))
    leaks = ", ".join(f"{c.name} {r['leak']:.1e}" for c, r in rows)
    print(f"\nshare of the protected component left after one projected step (float32 round-off): {leaks}")
    print(f"goal ≤ {100 * args.goal:.0f} % added (✗ = missed); total wall time {time.perf_counter() - started:.0f} s")
    load_after = os.getloadavg()[0]
    print(f"1-min load average {load_before:.1f} at start, {load_after:.1f} at end, {os.cpu_count()} CPUs")
    key = {(2, "wall"): "default", (1, "cpu"): "one_thread_cpu"}.get((args.threads, args.clock))
    if args.digits_batch != 128:
        key = f"{key or 'run'}_digits_batch{args.digits_batch}"
    key = key or f"{args.clock}_{args.threads}threads"
    title = f"Projection ÷ training step ({args.threads} thread(s), {args.clock} clock, median of {args.steps} steps)"
    notes = f"Goal ≤ {100 * args.goal:.0f} % added (✗ = missed); 1-min load {load_before:.1f} → {load_after:.1f}"
    results = table_from_markdown(markdown_table(rows, args.goal), title, notes)
    write_results("projection_overhead", {"tables": {key: results}})


if __name__ == "__main__":
    main()
