"""The floor of a deletion request: what a 10-row request costs when almost nothing has to be forgotten.

    .venv/bin/python -m benchmarks.request_floor                    # this checkout, phases under cProfile
    .venv/bin/python -m benchmarks.request_floor --against HEAD~3   # side by side with an earlier commit
    .venv/bin/python -m benchmarks.request_floor --lora             # a LoRA request's decompositions (MiniLM)

An HF ResNet with BatchNorm (16/32/64 channels) trained with a plain ``Trainer`` on the 6 667 animal
silhouettes of ``animal-mnist`` (3 epochs, AdamW 2e-3, batch 64), its space saved beside it; the forget set
is the first 10 training rows it predicts right (a request with something to remove); then, in a
fresh process per run, the request a user makes: load the model from its folder (the space is found
beside it), ``UnlearningTrainer`` with the defaults, ``train()``, ``save_model``. The wall time is taken
without a profiler (the median of ``--repeats`` runs); one more run under cProfile splits it into phases.

``--against REV`` checks REV out into a temporary worktree and runs the same measurement with its
library, alternating with this checkout's, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORGET_ROWS = 10
PHASES = (
    ("trainer construction", "__init__", "hf_unlearn/training/trainer.py"),
    ("  space load + checksum", "from_pretrained", "core/space.py"),
    ("  model fingerprints", "model_fingerprint", "core/fingerprint.py"),
    ("  input checks", "check_request_inputs", "data/checks.py"),
    ("prepare (request checks, forget Grams, subtraction, projectors)", "prepare", "protection/space.py"),
    ("  forget-row fingerprints", "forget_fingerprints", "protection/membership.py"),
    ("  forget-set Gram collection", "collect_gram_matrices", "core/covariance.py"),
    ("  decompositions (projectors)", "projectors", "core/space.py"),
    ("control checks", "control_metrics", "training/measurements.py"),
    ("end-of-run utility look", "full_utility", "training/measurements.py"),
    ("optimizer steps", "training_step", "trainer.py"),
    ("saving model and space", "save_model", "trainer.py"),
)


def build(folder: Path) -> None:
    """Train the model and save it with its space (once: a later run reuses the folder)."""
    import torch

    from benchmarks.fidelity.scenarios import load_animal_images, new_model
    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.exact import train_classifier
    from hf_unlearn.exact.retrain import TrainingRecipe

    torch.set_num_threads(1)
    data = load_animal_images(n=10000).with_format("torch")
    model = new_model("animal_resnet", seed=0)
    recipe = TrainingRecipe(num_train_epochs=3, learning_rate=2e-3, per_device_train_batch_size=64)
    train_classifier(model, data["train"], recipe, output_dir=str(folder / "train"))
    model.eval().save_pretrained(folder / "model")
    data.save_to_disk(str(folder / "data"))  # both checkouts of a side-by-side run read these very rows
    CoreGradientSpace.from_model(model, data["train"], show_progress=False).save_pretrained(
        folder / "model" / "core_gradient_space")


def choose_rows(folder: Path) -> None:
    """The first rows the model knows (predicted right): a request with something to remove, so steps are taken."""
    import torch
    from transformers import AutoModelForImageClassification

    from benchmarks.fidelity.scenarios import load_animal_images

    data = load_animal_images(n=10000).with_format("torch")
    model = AutoModelForImageClassification.from_pretrained(folder / "model").eval()
    with torch.no_grad():
        predicted = model(pixel_values=data["train"][:200]["pixel_values"]).logits.argmax(-1)
    known = (predicted == data["train"][:200]["labels"]).nonzero().flatten()[:FORGET_ROWS].tolist()
    (folder / "forget_rows.json").write_text(json.dumps(known))


def space_for(folder: Path, model_dir: Path) -> None:
    """``model_dir``: the trained model with a space built and saved by the ``hf_unlearn`` on the path (an
    earlier library may not read the current format)."""
    import shutil

    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForImageClassification

    from hf_unlearn import CoreGradientSpace

    torch.set_num_threads(1)
    if model_dir.exists():
        return
    shutil.copytree(folder / "model", model_dir, ignore=shutil.ignore_patterns("core_gradient_space"))
    data = load_from_disk(str(folder / "data")).with_format("torch")
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    CoreGradientSpace.from_model(model, data["train"], show_progress=False).save_pretrained(
        model_dir / "core_gradient_space")


def one_request(folder: Path, profile: bool, model_dir: Path | None = None) -> dict:
    """The request in this process (whichever ``hf_unlearn`` is on the path): wall seconds and phases."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForImageClassification

    from hf_unlearn import UnlearningArguments, UnlearningTrainer
    from hf_unlearn.data.forget import split_forget_retain

    torch.set_num_threads(1)
    data = load_from_disk(str(folder / "data")).with_format("torch")
    rows = json.loads((folder / "forget_rows.json").read_text())
    forget, retain = split_forget_retain(data["train"], rows)
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as out:
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        model = AutoModelForImageClassification.from_pretrained(model_dir or folder / "model")
        loaded = time.perf_counter()
        args = UnlearningArguments(output_dir=out, report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
                                   logging_strategy="no", save_strategy="no")
        trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                    eval_dataset=data["validation"])
        trainer.train()
        trainer.save_model(out)
        total = time.perf_counter() - start
        if profiler:
            profiler.disable()
    result = {"total": total, "model load": loaded - start, "steps": trainer.state.global_step,
              "outcome": trainer.outcome.reason}
    if profiler:
        stats = pstats.Stats(profiler)
        result["phases"] = {"model load": loaded - start, **{
            label: sum(e[3] for (path, _, fn), e in stats.stats.items() if fn == name and frag in path)
            for label, name, frag in PHASES}}
    return result


def lora_decompositions(repeats: int = 3) -> list[list]:
    """Seconds to make the projectors of a MiniLM space (pretrained, 6 layers, 384/1536 wide) for LoRA on
    query and value: every layer's decomposition, against only the layers whose weights move."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from benchmarks.fidelity.scenarios import minilm_path
    from hf_unlearn import CoreGradientSpace

    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2).eval()
    batches = [{"input_ids": torch.randint(1000, 20000, (16, 64), generator=torch.Generator().manual_seed(i))}
               for i in range(4)]
    space = CoreGradientSpace.from_model(model, batches, show_progress=False)
    moving = {n for n in space.layers if n.endswith((".query", ".value")) or n.startswith("classifier")}
    rows = []
    for label, names in (("every layer (before)", None), ("the layers LoRA moves (after)", moving)):
        times = []
        for _ in range(repeats):
            space.clear_decompositions()
            start = time.perf_counter()
            space.projectors(names=names)
            times.append(time.perf_counter() - start)
        count = len(space.layers) if names is None else len(names)
        rows.append([label, count, f"{statistics.median(times):.3f}"])
    rows.append(["ratio", "", f"{float(rows[0][2]) / float(rows[1][2]):.1f}"])
    return rows


def run_in(checkout: Path, folder: Path, profile: bool, model_dir: Path | None = None, call: str = "") -> dict:
    """``one_request`` (or ``call``) in a fresh process importing ``hf_unlearn`` from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    where = f"Path({str(model_dir)!r})" if model_dir else "None"
    call = call or f"module.one_request(Path({str(folder)!r}), {profile}, {where})"
    # this file by its path: an earlier checkout's benchmarks package may not have it
    code = ("import json, importlib.util; from pathlib import Path; import hf_unlearn; "
            f"spec = importlib.util.spec_from_file_location('request_floor', {str(Path(__file__).resolve())!r}); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            f"r = {call} or {{}}; r['library'] = hf_unlearn.__file__; "
            "print('RESULT ' + json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=checkout, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the request in {checkout} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="an earlier commit to compare with, side by side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default="outputs/request_floor", help="where the trained model is kept")
    parser.add_argument("--lora", action="store_true", help="only the decompositions a LoRA request needs (MiniLM)")
    args = parser.parse_args()
    if args.lora:
        from .results_io import table, write_results

        rows = lora_decompositions()
        for row in rows:
            print(row)
        write_results("request_floor", {"tables": {"lora_decompositions": table(
            ["projectors of", "layers", "median s"], rows,
            title="A LoRA request (query, value) on MiniLM: decompositions made, 1 thread")}})
        return
    folder = Path(args.cache).resolve()
    if not (folder / "data").is_dir():
        build(folder)
    if not (folder / "forget_rows.json").is_file():
        choose_rows(folder)
    checkouts = {"this checkout": ROOT}
    worktree = None
    if args.against:
        worktree = Path(tempfile.mkdtemp(prefix="request_floor_")) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.against], cwd=ROOT, check=True,
                       capture_output=True)
        checkouts = {f"at {args.against}": worktree, **checkouts}
    models = {name: None if checkout == ROOT else folder / f"model_{args.against}"
              for name, checkout in checkouts.items()}
    try:
        for name, checkout in checkouts.items():  # an earlier library saves (and reads) its own space format
            if models[name] is not None:
                run_in(checkout, folder, False, call=f"module.space_for(Path({str(folder)!r}), "
                                                     f"Path({str(models[name])!r}))")
        walls = {name: [] for name in checkouts}
        for _ in range(args.repeats):  # alternating, so both see the same machine load
            for name, checkout in checkouts.items():
                walls[name].append(run_in(checkout, folder, False, models[name])["total"])
        profiles = {name: run_in(checkout, folder, True, models[name]) for name, checkout in checkouts.items()}
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    from .results_io import table, write_results

    names = list(checkouts)
    phase_names = list(profiles[names[-1]]["phases"])
    rows = [[p, *[f"{profiles[n]['phases'].get(p, 0.0):.3f}" for n in names]] for p in phase_names]
    median = {n: statistics.median(walls[n]) for n in names}
    summary = [[n, f"{median[n]:.2f}", " / ".join(f"{w:.2f}" for w in walls[n]), profiles[n]["steps"]]
               for n in names]
    if len(names) == 2:
        summary.append(["ratio (earlier / this)", f"{median[names[0]] / median[names[1]]:.2f}", "", ""])
    for row in summary:
        print(row)
    for row in rows:
        print(row)
    key = "against" if args.against else "this"
    write_results("request_floor", {"tables": {
        f"floor_{key}": table(["library", "median wall s", "runs (s)", "steps"], summary,
                              title=f"A {FORGET_ROWS}-row request, model load to saved result, 1 thread"),
        f"phases_{key}": table(["phase (under cProfile, s)", *names], rows,
                               title="Where the floor goes"),
    }, "raw": {"walls": walls, "profiles": profiles, "against": args.against}})


if __name__ == "__main__":
    main()
