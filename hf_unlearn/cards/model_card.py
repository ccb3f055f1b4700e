"""Model cards that say what was forgotten, how, and how close the result is to retraining.

``UnlearningTrainer.save_model()`` and ``push_to_hub()`` write this card in place of the Trainer's
generic one. The card renders from ``UnlearningCardData``, a plain record of what happened, and
states only what was measured: when no retrained reference was evaluated, the card says so instead
of implying a guarantee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..evaluation.suite import avg_gap
from ..evaluation.tables import markdown_table

COMPARISON_KEYS = ("UA", "RA", "TA", "MIA")
# what stays on the owner's disk when an output folder is pushed: the pickled arguments (they can name the
# forget filter), the retrained reference (a second full model), mid-run checkpoints, logs and staging files
UNPUBLISHED_PATTERNS = (
    "_*",
    "checkpoint-*",
    "training_args.bin",
    "retrain_cache/*",
    "runs/*",
    "*.partial",
    ".*",
)


def public_name(name: str) -> str:
    """A model's name as a card may publish it: Hub ids as they are, local paths reduced to their last part."""
    text = str(name)
    local = text.startswith((".", "/", "~")) or "\\" in text or Path(text).expanduser().exists()
    return f"a local model ({Path(text).name})" if local else text


@dataclass
class UnlearningCardData:
    """Everything a card says, as values (the trainer fills it; tests can write one by hand)."""

    model_name: str
    base_model: str
    method: str
    scenario: str
    forget_count: int
    optim: str
    learning_rate: float
    epochs: float
    stop_rule: str
    stopped_epoch: float | None = None
    method_config: dict = field(default_factory=dict)
    paper_title: str | None = None
    paper_url: str | None = None
    paper_bibtex: str | None = None
    projection: str | None = None  # e.g. "gamma=0.8, energy `sigma`"; None when no space was used
    ledger: list[dict] = field(default_factory=list)
    seconds: float | None = None
    comparison: dict[str, dict[str, float]] | None = None
    comparison_reference: str = ""  # how the reference was made, e.g. "fine-tuned from `org/base`"
    tags: list[str] = field(default_factory=list)
    unlearned: bool | None = None  # None: no run recorded (e.g. a card written before training)
    outcome: str = ""  # why the run ended, in words
    backtracks: int = 0
    growths: int = 0  # times the control doubled a stalled sample removal's step
    warnings: list[str] = field(default_factory=list)  # full-set utility drops measured at the end
    adapter: bool = False  # a PEFT adapter: the card says ``library_name: peft``
    merged_adapter_base: str = ""  # a LoRA adapter folder merged into this base before unlearning
    adapter_description: str = ""  # the adapter the unlearning was trained into ("r=8, alpha 16, on query, value")
    incomplete: str = ""  # the stop rule's target was not reached, in words
    space_published: bool = False  # core_gradient_space/ is part of the upload (push_core_gradient_space)
    measured: str = ""  # what the stop rule and the guard read, start → end, in words


METRIC_NAMES = {
    "UA": "Unlearning accuracy (100 - forget accuracy)",
    "RA": "Retain accuracy",
    "TA": "Test accuracy",
    "MIA": "MIA-efficacy",
}


def _model_index(data: UnlearningCardData) -> list[dict] | None:
    """The measured comparison as Hub ``model-index`` metadata (the unlearned model's row only)."""
    metrics = (data.comparison or {}).get(data.method)
    if not metrics:
        return None
    entries = [
        {"type": key.lower(), "name": name, "value": round(float(metrics[key]), 2)}
        for key, name in METRIC_NAMES.items()
        if key in metrics and not math.isnan(metrics[key])
    ]
    reference = (data.comparison or {}).get("retrain")
    if reference and all(k in reference for k in COMPARISON_KEYS) and all(k in metrics for k in COMPARISON_KEYS):
        entries.append({"type": "avg_gap", "name": "Avg. Gap to the retrained model",
                        "value": round(avg_gap(metrics, reference, COMPARISON_KEYS), 2)})
    return [{
        "name": data.model_name,
        "results": [{
            "task": {"type": "machine-unlearning", "name": "Machine unlearning"},
            "dataset": {"type": "custom", "name": "forget / retain / test splits of the training data"},
            "metrics": entries,
        }],
    }]


def _ledger_rows(data: UnlearningCardData) -> str:
    if data.unlearned is False:
        return "| — | 0 | — | nothing recorded: this run did not unlearn |"
    if not data.ledger:
        return f"| 1 | {data.forget_count} | this run | no Core Gradient Space was used |"
    return "\n".join(
        f"| {r['request']} | {r['num_examples']} | {r['created_at']} | {r.get('note', '')} |" for r in data.ledger
    )


def _space_paragraph(data: UnlearningCardData) -> str:
    """What of the examples and the space this repository holds (the space is published only when asked)."""
    if data.projection is None and not data.ledger:
        return ("The examples themselves are not stored in this repository. This run used no Core Gradient "
                "Space, so there is no ledger that later requests could be checked against.")
    if not data.space_published:
        return ("The examples themselves are not stored in this repository. The Core Gradient Space (per-layer "
                "Gram matrices of the retained training inputs, and keyed fingerprints of the examples that later "
                "requests are checked against) stays with the model's owner and is not published with this model.")
    removed = ("The forgotten examples' contributions have been subtracted from those matrices, but the"
               if data.unlearned is not False else "The")
    return ("The examples themselves are not stored anywhere in this repository: the Core Gradient Space in "
            "`core_gradient_space/` keeps only per-layer input Gram matrices and 64-bit keyed fingerprints of the "
            f"examples, so a later request can be checked against what was already removed. {removed} matrices are "
            "aggregate second moments of the *retained* training inputs of every layer: treat them as statistics "
            "of the training data when deciding who may download this repository.")


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of UA/RA/TA/MIA (and Avg. Gap to ``retrain`` when present).

    A missing metric leaves its cell empty, and the row's Avg. Gap too: a mean over fewer metrics
    would not compare with the other rows. A metric measured but undefined (MIA-efficacy when only one
    class is kept) reads "n/a" in every row and the gaps leave it out alike.
    """
    reference = results.get("retrain")
    rows = []
    for name, metrics in results.items():
        cells = [_cell(metrics[k]) if k in metrics else "" for k in COMPARISON_KEYS]
        gap = ""
        complete = reference is not None and all(k in metrics and k in reference for k in COMPARISON_KEYS)
        if complete and name != "retrain":
            gap = f"{avg_gap(metrics, reference, COMPARISON_KEYS):.2f}"
        rows.append([name, *cells, gap])
    return markdown_table(["model", *COMPARISON_KEYS, "Avg. Gap"], rows)


def comparison_verdict(results: dict[str, dict[str, float]], method: str) -> str:
    """One sentence: did the run bring the model closer to the retrained one than the untouched original was?

    Said outright because the table alone lets a reader miss it: a new user's HF ResNet (5 % random request)
    ended at Avg. Gap 2.11 against the original's 1.62, under a card that otherwise read as a success.
    """
    reference, original, unlearned = (results.get(k) for k in ("retrain", "original", method))
    keys = COMPARISON_KEYS
    rows = (reference, original, unlearned)
    if not all(rows) or not all(k in row for row in rows for k in keys):
        return ""
    after, before = avg_gap(unlearned, reference, keys), avg_gap(original, reference, keys)
    if round(after, 2) == round(before, 2):  # a request that took no step reads exactly as the original
        return (f"As far from retraining as the original: Avg. Gap {after:.2f}, the untouched original's too (the run "
                "left the model where it was, or moved it by less than the table shows).")
    if after > before:
        return (f"**Farther from retraining than the original:** Avg. Gap {after:.2f} against the untouched "
                f"original's {before:.2f}. On this request the run did not bring the model closer to one "
                "retrained without the forget set.")
    return f"Closer to retraining than the original: Avg. Gap {after:.2f} against the untouched original's " \
        f"{before:.2f}."


def _hyperparameters(data: UnlearningCardData) -> str:
    values = ", ".join(f"`{k}`={v}" for k, v in data.method_config.items())
    return values or "none beyond the training arguments"


def render_model_card(data: UnlearningCardData) -> str:
    if data.comparison:
        comparison = comparison_table(data.comparison) + (
            "\n\nUA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy, MIA = MIA-efficacy "
            "(all %). Avg. Gap = mean |metric − retrained model's metric|."
        )
        verdict = comparison_verdict(data.comparison, data.method)
        comparison += f"\n\n{verdict}" if verdict else ""
        how = f" ({data.comparison_reference} on the retain set)" if data.comparison_reference else ""
        note = f"The figures above compare it with such a model, retrained in the same run{how}."
    else:
        comparison = "Not measured in this run: no model retrained without the forget set was evaluated."
        note = "No retrained reference was evaluated for this card, so its closeness to retraining is unknown."
    metadata = {
        "library_name": "peft" if data.adapter else "transformers",
        "tags": sorted({"hf_unlearn", "machine-unlearning", data.method, *data.tags}),
    }
    base = str(data.merged_adapter_base or data.base_model)
    if base and "/" in base and not Path(base).exists():
        metadata["base_model"] = base
    model_index = _model_index(data)
    if model_index:
        metadata["model-index"] = model_index
    protection = (
        f"updates projected away from the Core Gradient Space ({data.projection})"
        if data.projection
        else "none beyond the method's own loss"
    )
    if data.paper_title:
        link = f" ({data.paper_url})" if data.paper_url else ""
        citation = f"The method comes from *{data.paper_title}*{link}:\n\n```bibtex\n{data.paper_bibtex}\n```"
    else:
        citation = "No paper is attached to this method."
    if data.unlearned is False:
        summary = (
            f"**Not unlearned.** A request to remove {data.forget_count} training examples with `{data.method}` was "
            f"run, but {data.outcome}. The weights are the original's (or unchanged in effect), and the request "
            "is not recorded as carried out."
        )
    else:
        summary = (
            f"{data.forget_count} training examples were removed with the method `{data.method}` "
            f"({data.scenario} removal)."
        )
        if data.outcome:
            summary += f" The run ended because {data.outcome}"
            notes = [f"the utility guard rolled back {data.backtracks} time(s)"] if data.backtracks else []
            notes += [f"the step doubled {data.growths} time(s) while the forget set's confidence stalled"] \
                if data.growths else []
            summary += f" ({'; '.join(notes)})." if notes else "."
        if data.incomplete:
            summary += f" **Removal incomplete:** the run ended before its stop rule was met; {data.incomplete}."
        if data.warnings:
            summary += " **Utility warning:** " + "; ".join(data.warnings) + "."
    if data.adapter:
        summary += (f" The unlearning was trained into a LoRA adapter ({data.adapter_description}) over "
                    f"{public_name(data.base_model)}: this repository holds that adapter; load it on that base with "
                    "PEFT, or `merge_and_unload()` it for the full weights.")
    if data.merged_adapter_base:
        summary += (f" The LoRA adapter was merged into its base, {public_name(data.merged_adapter_base)}, before "
                    "unlearning: this repository holds the merged full weights.")
    template = resources.files("hf_unlearn.cards").joinpath("templates/model_card.md").read_text()
    return template.format(
        yaml=yaml.safe_dump(metadata, sort_keys=False).strip(),
        model_name=data.model_name,
        base_model=public_name(data.base_model),
        summary=summary,
        ledger_rows=_ledger_rows(data),
        space_paragraph=_space_paragraph(data),
        optim=data.optim,
        learning_rate=data.learning_rate,
        epochs=data.epochs,
        stop_rule=data.stop_rule,
        stopped_epoch=f"{data.stopped_epoch:.0f}" if data.stopped_epoch is not None else "n/a",
        hyperparameters=_hyperparameters(data),
        protection=protection,
        seconds=f"{data.seconds:.1f} s" if data.seconds else "not recorded",
        measured=data.measured or "not recorded",
        comparison=comparison,
        comparison_note=note,
        citation=citation,
    )


def write_model_card(data: UnlearningCardData, output_dir: str | Path) -> Path:
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(data))
    return path
