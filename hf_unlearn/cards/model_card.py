"""Model cards that say what was forgotten, how, and how close the result is to retraining.

``UnlearningTrainer.save_model()`` and ``push_to_hub()`` write this card in place of the Trainer's
generic one. The card renders from ``UnlearningCardData``, a plain record of what happened, through
``huggingface_hub.ModelCard.from_template``: the YAML header is a ``ModelCardData`` (see ``metadata.py``)
and every sentence that depends on the run is a condition in ``templates/model_card.md``. It states only
what was measured: when no retrained reference was evaluated, the card says so instead of implying a
guarantee.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from huggingface_hub import ModelCard

from ..evaluation.suite import avg_gap, ta_label, ta_on_kept_classes
from ..evaluation.tables import markdown_table
from .data import UnlearningCardData
from .metadata import COMPARISON_KEYS, METRIC_NAMES, card_metadata

__all__ = [
    "COMPARISON_KEYS",
    "METRIC_NAMES",
    "UNPUBLISHED_PATTERNS",
    "UnlearningCardData",
    "comparison_table",
    "comparison_verdict",
    "public_name",
    "render_model_card",
    "write_model_card",
]

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


# folder names that say nothing of the model: the one above them is named as well
GENERIC_FOLDERS = frozenset({"model", "models", "checkpoint", "final", "output", "outputs", "snapshot", "weights"})


def public_name(name: str) -> str:
    """A model's name as a card may publish it: Hub ids as they are, local paths reduced to their last part (and
    the part above it when the last one is a generic name such as ``model``)."""
    text = str(name)
    local = text.startswith((".", "/", "~")) or "\\" in text or Path(text).expanduser().exists()
    if not local:
        return text
    path = Path(text).expanduser()
    shown = path.name
    if shown.lower() in GENERIC_FOLDERS or shown.startswith("checkpoint-"):
        shown = f"{path.resolve().parent.name}/{shown}"
    return f"a local model ({shown})"


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of UA/RA/TA/MIA (and Avg. Gap to ``retrain`` when present); TA reads "TA (kept classes)"
    when the results measured it so (class removal).

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
    header = [ta_label(results) if key == "TA" else key for key in COMPARISON_KEYS]
    return markdown_table(["model", *header, "Avg. Gap"], rows)


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


def _template_values(data: UnlearningCardData) -> dict[str, object]:
    """What the template reads besides the record itself: names fit to publish and the comparison's text."""
    return {
        "data": data,
        "base_model_name": public_name(data.base_model),
        "merged_base_name": public_name(data.merged_adapter_base) if data.merged_adapter_base else "",
        "comparison_table": comparison_table(data.comparison) if data.comparison else "",
        "verdict": comparison_verdict(data.comparison, data.method) if data.comparison else "",
        "ta_kept": ta_on_kept_classes(data.comparison or {}),
    }


def render_model_card(data: UnlearningCardData) -> str:
    """The card's Markdown, YAML header included (parsed back by ``huggingface_hub.ModelCard`` as it renders)."""
    template = resources.files("hf_unlearn.cards").joinpath("templates", "model_card.md")
    with resources.as_file(template) as path:
        card = ModelCard.from_template(card_metadata(data), template_path=str(path), **_template_values(data))
    text = str(card)
    return text if text.endswith("\n") else text + "\n"  # Jinja drops the template's final newline


def write_model_card(data: UnlearningCardData, output_dir: str | Path) -> Path:
    """Write the card as ``README.md`` in ``output_dir`` (where the Hub looks for it) and return its path."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(data))
    return path
