"""Write an unlearning report: a Markdown table, the same numbers as JSON, and two figures.

Methods are shown beside the reference (the model retrained without the forget set), because every
§5 metric is judged by its distance to that model, not by its absolute value. Figures are drawn on
``matplotlib.figure.Figure`` objects with the Agg canvas, without pyplot, so writing a report
neither needs a display nor changes the process-wide matplotlib backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metrics import per_example_loss_from_outputs
from .predict import collect_outputs
from .suite import GAP_KEYS, avg_gap, speedup, ta_label, ta_on_kept_classes
from .tables import markdown_table

# key, column header, decimals
COLUMNS = (
    ("UA", "UA (%)", 2),
    ("RA", "RA (%)", 2),
    ("TA", "TA (%)", 2),
    ("MIA", "MIA-eff. (%)", 2),
    ("loss_AUC", "Loss AUC", 3),
    ("JS", "JS (nats)", 4),
    ("act_dist", "Act. dist.", 4),
)
KEPT_TA_HEADER = "TA (kept classes, %)"
ACCURACIES = "RA/TA = retain/test accuracy"
KEPT_ACCURACIES = ("RA = retain accuracy; TA (kept classes) = test accuracy on the classes that were not removed "
                   "(their test examples are wrong for the reference too; all classes: TA_all_classes in report.json)")
LEGEND = (
    "UA = 100 − forget accuracy; {accuracies}; MIA-eff. = share of forget examples "
    "a confidence attacker calls non-members (SalUn); Loss AUC = loss-threshold attack on forget vs "
    "test (0.5 = looks unseen); JS / Act. dist. = distance of outputs on the forget set to the "
    "reference model; Avg. Gap = mean |metric − reference| over UA, RA, TA, MIA-eff. (lower is better)."
)


def per_example_loss(
    model: nn.Module,
    dataset,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Cross-entropy of every example of ``dataset`` under ``model``, as a float64 array.

    Loss histograms show what a single accuracy hides: a model that still "remembers" the forget
    set puts its forget losses near zero, below the test losses; a retrained model does not.
    """
    outputs = collect_outputs(model, dataset, collate_fn=collate_fn, batch_size=batch_size, device=device)
    return per_example_loss_from_outputs(outputs).numpy().astype(np.float64)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic | np.ndarray | torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None  # an undefined metric (MIA with one kept class); NaN is not JSON
    return value


def _fmt(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.{decimals}f}"


def _summary(results: Mapping[str, Mapping[str, float]], reference: str) -> dict[str, dict[str, float]]:
    """Avg. Gap and speed-up of every non-reference method, where computable."""
    ref = results.get(reference)
    summary: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        if ref is None or name == reference:
            continue
        entry: dict[str, float] = {}
        if all(k in result and k in ref for k in GAP_KEYS):
            entry["avg_gap"] = avg_gap(result, ref)
        if result.get("time") and ref.get("time"):
            entry["speedup"] = speedup(ref["time"], result["time"])
        summary[name] = entry
    return summary


def _farther_than_original(summary: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The methods that ended farther from the reference than the untouched original, in words (a table lets a
    reader miss that a run made things worse)."""
    original = summary.get("original", {}).get("avg_gap")
    if original is None:
        return []
    farther = [f"{name} ({entry['avg_gap']:.2f})" for name, entry in summary.items()
               if name != "original" and entry.get("avg_gap", -math.inf) > original]
    if not farther:
        return []
    return ["", f"**Farther from the reference than the untouched original ({original:.2f}):** {', '.join(farther)}."]


def _columns(results, order: list[str]) -> list[tuple[str, str, int]]:
    """The report's columns for the metrics present; TA named for what it measured (kept classes or all)."""
    kept = ta_on_kept_classes(results)
    columns = [c for c in COLUMNS if any(c[0] in results[n] for n in order)]
    return [(key, KEPT_TA_HEADER if key == "TA" and kept else header, decimals) for key, header, decimals in columns]


def _markdown(results, reference: str, summary, title: str, figures: list[str]) -> str:
    order = [reference] if reference in results else []
    order += [name for name in results if name != reference]
    columns = _columns(results, order)
    has_gap = any("avg_gap" in s for s in summary.values())
    has_time = any("time" in results[n] for n in order)
    has_speedup = any("speedup" in s for s in summary.values())
    header = ["Method", *(c[1] for c in columns)]
    header += ["Avg. Gap ↓"] if has_gap else []
    header += ["Time (s)"] if has_time else []
    header += ["Speed-up"] if has_speedup else []
    rows = []
    for name in order:
        result, entry = results[name], summary.get(name, {})
        label = f"{name} (reference)" if name == reference else name
        cells = [label, *(_fmt(result.get(key), decimals) for key, _, decimals in columns)]
        cells += [_fmt(entry.get("avg_gap"), 2)] if has_gap else []
        cells += [_fmt(result.get("time"), 1)] if has_time else []
        if has_speedup:
            cells += [f"{entry['speedup']:.1f}×" if "speedup" in entry else "—"]
        rows.append(cells)
    lines = [f"# {title}", ""]
    if reference not in results:
        lines += [f"No `{reference}` result was given, so there is no Avg. Gap or speed-up.", ""]
    lines += [markdown_table(header, rows, align_right_from=1)]
    lines += _farther_than_original(summary)
    lines += ["", LEGEND.format(accuracies=KEPT_ACCURACIES if ta_on_kept_classes(results) else ACCURACIES), ""]
    for figure in figures:
        lines += [f"![{Path(figure).stem}]({figure})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _metrics_figure(results, reference: str, summary, path: Path) -> bool:
    from matplotlib.figure import Figure

    keys = [k for k in GAP_KEYS if any(k in r for r in results.values())]
    if not keys:
        return False
    order = ([reference] if reference in results else []) + [n for n in results if n != reference]
    gaps = {n: s["avg_gap"] for n, s in summary.items() if "avg_gap" in s}
    fig = Figure(figsize=(10 if gaps else 7, 4), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[3, 1]) if gaps else [fig.subplots()]
    ax = axes[0]
    width = 0.8 / len(order)
    x = np.arange(len(keys))
    for i, name in enumerate(order):
        values = [results[name].get(k, np.nan) for k in keys]
        bars = ax.bar(
            x + (i - (len(order) - 1) / 2) * width,
            values,
            width,
            label=name,
            color="0.3" if name == reference else None,
            hatch="//" if name == reference else None,
        )
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=1)
    names = {"MIA": "MIA-eff.", "TA": ta_label(results)}
    ax.set_xticks(x, [names.get(k, k) for k in keys])
    ax.set_ylabel("percent")
    ax.set_ylim(0, 112)
    ax.set_title(f"Metrics beside {reference}" if reference in results else "Metrics")
    ax.legend(fontsize="small")
    if gaps:
        axes[1].bar(list(gaps), list(gaps.values()), color="tab:red")
        axes[1].set_title("Avg. Gap (lower is better)")
        axes[1].tick_params(axis="x", labelrotation=45)
    fig.savefig(path, dpi=120)
    return True


def _loss_histogram_figure(histograms: Mapping[str, np.ndarray], path: Path) -> None:
    from matplotlib.figure import Figure

    arrays = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in histograms.items()}
    arrays = {name: a[np.isfinite(a)] for name, a in arrays.items() if a.size}
    if not arrays:
        raise ValueError("loss_histograms holds no finite losses.")
    everything = np.concatenate(list(arrays.values()))
    # losses of well-fitted models spread over many orders of magnitude (1e-10 … 10): use log bins,
    # and weight each curve to sum to one so that sets of different sizes compare directly
    positive = everything[everything > 0]
    low = max(float(positive.min()) if positive.size else 1e-12, 1e-12)
    high = max(float(everything.max()), low * 10)
    bins = np.logspace(np.log10(low), np.log10(high), 40)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for name, values in arrays.items():
        weights = np.full(values.shape, 1.0 / values.size)
        ax.hist(
            np.clip(values, low, high), bins=bins, weights=weights, histtype="step", linewidth=1.5, label=name
        )
    ax.set_xscale("log")
    ax.set_xlabel(
        f"per-example cross-entropy (nats, log scale; values below {low:.0e} counted in the first bin)"
    )
    ax.set_ylabel("fraction of examples")
    ax.set_title("Per-example loss")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def write_report(
    results: Mapping[str, Mapping[str, float]],
    output_dir: str | Path,
    *,
    reference: str = "retrain",
    loss_histograms: Mapping[str, np.ndarray] | None = None,
    title: str = "Unlearning report",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``metrics.png`` and (given losses) ``loss_histograms.png``.

    ``results`` maps a method name to a result of
    :func:`~hf_unlearn.evaluation.suite.evaluate_unlearning` (``"time"`` in seconds optional); the
    entry named ``reference`` is the retrained model. ``loss_histograms`` maps a curve label (say
    ``"forget"``, ``"test"``, ``"retrain forget"``) to per-example losses from
    :func:`per_example_loss`. ``report.json`` holds ``results`` unchanged plus the derived Avg. Gap
    and speed-up, so ``json.load(...)["results"]`` round-trips, and ``"ta_label"``: "TA (kept classes)" when
    the results measured TA on the kept classes (``evaluate_unlearning(forgotten_classes=...)``), else "TA".
    Returns the written paths.
    """
    if not results:
        raise ValueError("write_report needs at least one result.")
    label = ta_label(results)  # refuses rows whose TA was measured on different classes, before writing anything
    results = _jsonable(results)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = _summary(results, reference)
    paths: dict[str, Path] = {}
    figures: list[str] = []
    if _metrics_figure(results, reference, summary, output_dir / "metrics.png"):
        paths["metrics_figure"] = output_dir / "metrics.png"
        figures.append("metrics.png")
    if loss_histograms:
        _loss_histogram_figure(loss_histograms, output_dir / "loss_histograms.png")
        paths["loss_histograms_figure"] = output_dir / "loss_histograms.png"
        figures.append("loss_histograms.png")
    paths["markdown"] = output_dir / "report.md"
    paths["markdown"].write_text(_markdown(results, reference, summary, title, figures), encoding="utf-8")
    paths["json"] = output_dir / "report.json"
    payload = {
        "title": title,
        "reference": reference,
        "ta_label": label,
        "results": results,
        "avg_gap": {n: s["avg_gap"] for n, s in summary.items() if "avg_gap" in s},
        "speedup": {n: s["speedup"] for n, s in summary.items() if "speedup" in s},
    }
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return paths
