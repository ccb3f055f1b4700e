"""Model cards that say what was forgotten, how, and how close the result is to retraining.

``UnlearningTrainer.push_to_hub()`` (and ``save_model`` through the recipe) writes this card in
place of the Trainer's generic one. It states only what was measured: when no retrained reference
was evaluated, the card says so instead of implying a guarantee.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from .trainer import UnlearningTrainer

COMPARISON_KEYS = ("UA", "RA", "TA", "MIA")


def _ledger_rows(trainer: UnlearningTrainer) -> str:
    space = trainer.core_gradient_space
    if space is None or not space.ledger:
        return f"| 1 | {len(trainer.forget_dataset)} | this run | no Core Gradient Space was used |"
    return "\n".join(f"| {r['request']} | {r['num_examples']} | {r['created_at']} | {r.get('note', '')} |"
                     for r in space.ledger)


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of UA/RA/TA/MIA (and Avg. Gap to ``retrain`` when present).

    A missing metric leaves its cell empty, and the row's Avg. Gap too: a mean over fewer metrics
    would not compare with the other rows.
    """
    header = "| model | " + " | ".join(COMPARISON_KEYS) + " | Avg. Gap |"
    lines = [header, "|" + "---|" * (len(COMPARISON_KEYS) + 2)]
    reference = results.get("retrain")
    for name, metrics in results.items():
        cells = [f"{metrics[k]:.2f}" if k in metrics else "" for k in COMPARISON_KEYS]
        gap = ""
        complete = reference is not None and all(k in metrics and k in reference for k in COMPARISON_KEYS)
        if complete and name != "retrain":
            gap = f"{sum(abs(metrics[k] - reference[k]) for k in COMPARISON_KEYS) / len(COMPARISON_KEYS):.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines)


def render_model_card(trainer: UnlearningTrainer, model_name: str | None = None, tags=None, **_) -> str:
    args = trainer.args
    config = getattr(trainer.model, "config", None)
    base_model = getattr(config, "_name_or_path", "") or type(trainer.model).__name__
    results = getattr(trainer, "comparison", None)
    if results:
        comparison = comparison_table(results) + (
            "\n\nUA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy, MIA = MIA-efficacy "
            "(all %). Avg. Gap = mean |metric − retrained model's metric|."
        )
        note = "The figures above compare it with such a model, retrained in the same run."
    else:
        comparison = "Not measured in this run: no model retrained without the forget set was evaluated."
        note = "No retrained reference was evaluated for this card, so its closeness to retraining is unknown."
    metadata = {
        "library_name": "transformers",
        "tags": sorted({"hf_unlearn", "machine-unlearning", args.method, *(tags or [])}),
    }
    if base_model and "/" in str(base_model) and not Path(str(base_model)).exists():
        metadata["base_model"] = str(base_model)
    protection = (
        f"updates projected away from the Core Gradient Space (gamma={args.gamma}, energy `{args.gamma_energy}`)"
        if trainer.method.uses_projection else "none beyond the method's own loss"
    )
    seconds = f"{trainer.unlearning_seconds:.1f} s" if trainer.unlearning_seconds else "not recorded"
    template = resources.files("hf_unlearn").joinpath("templates/model_card.md").read_text()
    return template.format(
        yaml=yaml.safe_dump(metadata, sort_keys=False).strip(),
        model_name=model_name or Path(args.output_dir).name,
        base_model=base_model,
        forget_count=len(trainer.forget_dataset),
        method=args.method,
        scenario=trainer.scenario,
        ledger_rows=_ledger_rows(trainer),
        optim=getattr(args.optim, "value", args.optim),
        learning_rate=args.learning_rate,
        epochs=args.num_train_epochs,
        stop_rule=args.stop_rule,
        stopped_epoch=f"{trainer.state.epoch:.0f}" if trainer.state.epoch is not None else "n/a",
        protection=protection,
        seconds=seconds,
        comparison=comparison,
        comparison_note=note,
    )


def write_model_card(trainer: UnlearningTrainer, output_dir: str | None = None, **kwargs) -> Path:
    path = Path(output_dir or trainer.args.output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(trainer, **kwargs))
    return path
