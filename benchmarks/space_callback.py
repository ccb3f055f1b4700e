"""What collecting the Core Gradient Space inside training costs, and how good a last-epoch space is.

    .venv/bin/python -m benchmarks.space_callback            # 6 667 animal silhouettes, HF ResNet (BatchNorm)
    .venv/bin/python -m benchmarks.space_callback --images 1200 --epochs 4   # smaller and quicker

One process, one thread. The same seeded ``Trainer`` run four ways: plain, with
``CoreGradientSpaceCallback("last_epoch")`` (every step's forwards, and sketched: float32 products of 1/8 of
the steps), and with ``CoreGradientSpaceCallback("final_pass")``; each epoch's CPU time is taken by a callback.
The hooks do not change what training computes, so all runs end with the same weights (checked). Reported:

* the cost to the training run: the callback's own seconds (inside its hooks during the last epoch plus its
  work at the end, or the final pass) against the mean epoch of the same run (the first left out: it pays for
  warm-up); each run's last epoch beside its other epochs shows the same from the outside, with the machine's
  noise (the plain run's row measures that noise);
* how close the last-epoch space (moving weights, train-mode BatchNorm) is to the final-pass one: per
  layer the ranks at the run's γ, the subspace overlap ‖U_lastᵀ U_final‖²_F / k_final and the share of the
  final Gram's protected energy the last-epoch basis holds (trace(U_lastᵀ G U_last) over the same for U_final);
* one request served with each space (class removal with the library's defaults): forget, retain and
  kept-test accuracy, beside a model retrained without the class with the same recipe.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time

import torch
from transformers import Trainer, TrainerCallback

from hf_unlearn import CoreGradientSpaceCallback, UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.columns import label_array
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.exact import train_classifier
from hf_unlearn.exact.retrain import TrainingRecipe

from .fidelity.scenarios import load_animal_images, new_model
from .results_io import table, write_results

FORGET_CLASS = 3
VARIANTS = {  # run name: the callback's arguments (None: a plain Trainer run)
    "plain": None,
    "last_epoch": {"mode": "last_epoch"},
    "last_epoch_sketch": {"mode": "last_epoch", "precision": "float32", "step_fraction": 0.125},
    "final_pass": {"mode": "final_pass"},
}


class EpochTimes(TrainerCallback):
    """CPU seconds of every epoch (begin to end, evaluation excluded): on a shared machine the process's own
    CPU time, not the wall clock, is what the hooks add (one intra-op thread: CPU time is compute time)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.process_time()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds.append(time.process_time() - self._start)


def train(data, recipe: TrainingRecipe, callback, folder: str):
    model = new_model("animal_resnet", seed=0)
    times = EpochTimes()
    # the timer first: an epoch's time holds the hooks' work during its steps; the work at its end (the final
    # pass, the last epoch's fingerprints) is in the training total and in the callback's collection seconds
    callbacks = [times] + ([callback] if callback is not None else [])
    trainer = Trainer(model=model, args=recipe.training_arguments(folder), train_dataset=data["train"],
                      callbacks=callbacks)
    start = time.perf_counter()
    trainer.train()
    return model.eval(), times.seconds, time.perf_counter() - start


def overlap(last, final) -> list[dict]:
    rows = []
    for name in final.layers:
        u_last, u_final = last.basis(name), final.basis(name)
        gram = final.grams[name]
        held = torch.trace(u_last.T @ gram @ u_last) / torch.trace(u_final.T @ gram @ u_final)
        rows.append({
            "layer": name,
            "rank_last": u_last.shape[1],
            "rank_final": u_final.shape[1],
            "dim": gram.shape[0],
            "subspace_overlap": float((u_last.T @ u_final).pow(2).sum() / u_final.shape[1]),
            "energy_held": float(held),
        })
    return rows


def serve(model, space, data, folder: str) -> dict:
    model = copy.deepcopy(model)
    train_rows = data["train"]
    forget, retain = split_forget_retain(train_rows, indices_of_classes(train_rows, [FORGET_CLASS]))
    args = UnlearningArguments(output_dir=folder, report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
                               logging_strategy="no")
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=data["validation"], core_gradient_space=copy.deepcopy(space))
    trainer.train()
    return {**scores(model, forget, retain, data["test"]), "seconds": trainer.unlearning_seconds}


def scores(model, forget, retain, test) -> dict:
    kept = test.select([i for i, y in enumerate(label_array(test).tolist()) if y != FORGET_CLASS])
    return {"forget_acc": accuracy(model, forget), "retain_acc": accuracy(model, retain),
            "kept_test_acc": accuracy(model, kept)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000, help="animal silhouettes drawn (2/3 train)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--name", default="space_callback")
    args = parser.parse_args()
    torch.set_num_threads(1)
    CoreGradientSpaceCallback.clock = staticmethod(time.process_time)  # as the epochs: CPU seconds
    data = load_animal_images(n=args.images).with_format("torch")
    recipe = TrainingRecipe(num_train_epochs=args.epochs, learning_rate=2e-3, per_device_train_batch_size=64)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        train(data, dataclasses.replace(recipe, num_train_epochs=1), None, f"{tmp}/warm-up")  # first-run costs
        for mode, options in VARIANTS.items():
            callback = None if options is None else CoreGradientSpaceCallback(**options)
            model, epochs, total = train(data, recipe, callback, f"{tmp}/{mode}")
            runs[mode] = {"model": model, "epochs": epochs, "total": total, "callback": callback}
            print(mode, [round(s, 2) for s in epochs], round(total, 2), flush=True)
        plain, last, final = runs["plain"], runs["last_epoch"], runs["final_pass"]
        same = all(torch.equal(a, b) for a, b in zip(plain["model"].state_dict().values(),
                                                      last["model"].state_dict().values()))
        final_space = final["callback"].space
        sketches = [m for m in VARIANTS if m.startswith("last_epoch")]
        layer_rows = {m: overlap(runs[m]["callback"].space, final_space) for m in sketches}
        served = {mode: serve(final["model"], runs[mode]["callback"].space, data, f"{tmp}/serve_{mode}")
                  for mode in (*sketches, "final_pass")}
        retain_rows = data["train"].select(
            [i for i, y in enumerate(label_array(data["train"]).tolist()) if y != FORGET_CLASS])
        retrained = new_model("animal_resnet", seed=0)
        retrain_seconds = train_classifier(retrained, retain_rows, recipe, output_dir=f"{tmp}/retrain")
        forget, retain = split_forget_retain(
            data["train"], indices_of_classes(data["train"], [FORGET_CLASS]))
        served["retrained"] = {**scores(retrained.eval(), forget, retain, data["test"]), "seconds": retrain_seconds}

    def middle(run) -> float:  # the mean epoch, the first (warm-up) and the last left out
        return sum(run["epochs"][1:-1]) / max(len(run["epochs"]) - 2, 1)

    def cost(run) -> str:  # the last epoch and the work at its end, against the same run's other epochs
        if run["callback"] is None:
            return f"{100 * (run['epochs'][-1] / middle(run) - 1):+.1f} % (noise)"
        return f"{100 * run['callback'].collection_seconds / middle(run):.1f} %"

    cost_rows = [
        [mode, f"{run['epochs'][-1]:.2f}", f"{middle(run):.2f}",
         f"{run['callback'].collection_seconds:.2f}" if run["callback"] else "-", cost(run), f"{run['total']:.1f}"]
        for mode, run in runs.items()
    ]
    tables = {
        "cost": table(["run", "last epoch s", "other epochs s (mean)", "collection s (hooks + end)",
                       "collection / an epoch", "training s"], cost_rows,
                      title=f"Cost to the training run ({len(data['train'])} images, {args.epochs} epochs, 1 thread)",
                      notes=f"same final weights with and without hooks: {same}"),
        "overlap": table(["layer", "dim", "rank final", *[f"{m}: {c}" for m in sketches for c in
                                                           ("rank", "overlap", "energy held")]],
                         [[r["layer"], r["dim"], r["rank_final"],
                           *[x for m in sketches for x in (layer_rows[m][i]["rank_last"],
                                                            f"{layer_rows[m][i]['subspace_overlap']:.3f}",
                                                            f"{layer_rows[m][i]['energy_held']:.3f}")]]
                          for i, r in enumerate(layer_rows[sketches[0]])],
                         title="Last-epoch spaces against the final-pass space (gamma 0.8, sigma energy)"),
        "request": table(["space", "forget acc", "retain acc", "kept test acc", "seconds"],
                         [[k, f"{v['forget_acc']:.1f}", f"{v['retain_acc']:.1f}", f"{v['kept_test_acc']:.1f}",
                           f"{v['seconds']:.1f}"] for k, v in served.items()],
                         title=f"Class {FORGET_CLASS} removed with the library defaults, served with each space"),
    }
    raw = {"epochs": {m: r["epochs"] for m, r in runs.items()}, "layers": layer_rows, "served": served,
           "images_train": len(data["train"]), "same_weights": same}
    for key, tab in tables.items():
        print(key, tab["rows"], flush=True)
    write_results(args.name, {"tables": tables, "raw": raw})


if __name__ == "__main__":
    main()
