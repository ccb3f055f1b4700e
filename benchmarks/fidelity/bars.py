"""The suite's bars, read off its results (means over the seeds run).

(a) no method returns a model 3+ points below the original in retain or test accuracy (full sets)
    without the library flagging it (its end-of-run utility warning);
(b) PGU and the default path end no farther from retraining than doing nothing and within
    1.5 × noise floor + 0.5 on random requests, and at most 1.0 Avg. Gap on class removal;
(c) the default path is the best method or within the noise floor of it;
(d) the default path's wall time against retraining (≤ 1/10 vision, ≤ 1/3 text).
"""

from __future__ import annotations

import statistics

from hf_unlearn.evaluation.tables import markdown_table

from .scenarios import ALL_SCENARIOS

DEFAULT_PATH = "pgu_retain"  # what method="auto" runs when the trainer has a retain set
NOT_METHODS = ("reference", "reference_2", "do_nothing")


def _mean(seeds: list[dict], row: str, key: str) -> float:
    values = [s["rows"][row][key] for s in seeds if row in s["rows"] and key in s["rows"][row]]
    return statistics.fmean(values) if values else float("nan")


def _b(scenario, gap: float, floor: float, nothing: float) -> str:
    if scenario.request in ("random", "user"):  # a user's records: a sample removal, judged as random requests are
        return "yes" if gap <= nothing and gap <= 1.5 * floor + 0.5 else "no"
    if scenario.request == "class":
        return "yes" if gap <= 1.0 else "no"
    return "n/a"


def unflagged_drops(results: dict) -> list[str]:
    """(a): every run 3+ points below the original (RA or TA, full sets) that the library did not warn about."""
    found = []
    for name, per_seed in results.items():
        for seed, run in per_seed.items():
            for method, row in run["rows"].items():
                if method not in NOT_METHODS and row.get("flag") and not row.get("warned"):
                    found.append(f"{name} seed {seed} {method}")
    return found


def bars_table(results: dict) -> str:
    rows = []
    for name, per_seed in results.items():
        scenario, seeds = ALL_SCENARIOS[name], list(per_seed.values())
        floor = _mean(seeds, "reference_2", "gap")
        nothing = _mean(seeds, "do_nothing", "gap")
        methods = [m for m in seeds[0]["rows"] if m not in NOT_METHODS]
        gaps = {m: _mean(seeds, m, "gap") for m in methods}
        best = min(gaps, key=gaps.get)
        default, pgu = gaps.get(DEFAULT_PATH, float("nan")), gaps.get("pgu", float("nan"))
        ratio = _mean(seeds, DEFAULT_PATH, "time") / statistics.fmean(s["times"]["reference_s"] for s in seeds)
        rows.append([
            f"{name} ({'tuned on' if scenario.tuned_on else 'held out'})",
            f"{floor:.2f}", f"{nothing:.2f}", f"{pgu:.2f}", f"{default:.2f}", f"{best} ({gaps[best]:.2f})",
            f"{_b(scenario, pgu, floor, nothing)} / {_b(scenario, default, floor, nothing)}",
            "yes" if default <= gaps[best] + floor else "no",
            f"{ratio:.2f}",
        ])
    header = ["scenario", "floor", "do nothing", "pgu", f"{DEFAULT_PATH} (default path)", "best method (gap)",
              "(b) pgu / default", "(c) default ≤ best + floor", "(d) default time ÷ retrain"]
    drops = unflagged_drops(results)
    note = ("(a): every run 3+ points below the original was flagged by the library." if not drops else
            f"(a): {len(drops)} run(s) 3+ points below the original that the library did not flag: "
            + "; ".join(drops) + ".")
    return markdown_table(header, rows) + "\n\n" + note + "\n"


def _kept_bars(row: dict, reference: dict, second: dict) -> tuple[str, str]:
    """Kept data costs retraining nothing, so neither may unlearning: RA within 1 point of the reference's, TA
    no farther from it than the second reference's TA + 0.5."""
    ra = abs(row["RA"] - reference["RA"]) <= 1.0
    ta = abs(row["TA"] - reference["TA"]) <= abs(second["TA"] - reference["TA"]) + 0.5
    return ("yes" if ra else "no"), ("yes" if ta else "no")


def kept_data_table(results: dict) -> str:
    """Per scenario and seed, every row's metrics as differences from the first reference (the noise floor is
    ``reference_2``'s row), the kept-data bars, and the per-example measures (``outside``: % of forget examples
    whose logit-scaled confidence lies outside the range references' range; ``KS`` against the reference)."""
    rows = []
    for name, per_seed in results.items():
        for seed, run in per_seed.items():
            reference, second = run["rows"]["reference"], run["rows"]["reference_2"]
            for method, row in run["rows"].items():
                if method == "reference":
                    rows.append([name, seed, "reference (absolute)", *(f"{row[k]:.1f}" for k in ("UA", "RA", "TA",
                                 "MIA")), "0", "", "", f"{row.get('outside', float('nan')):.0f}",
                                 f"{row.get('dist', float('nan')):.2f}", "0"])
                    continue
                bars = _kept_bars(row, reference, second) if method not in NOT_METHODS else ("", "")
                rows.append([
                    name, seed, method, *(f"{row[k] - reference[k]:+.1f}" for k in ("UA", "RA", "TA", "MIA")),
                    f"{row['gap']:.2f}", *bars,
                    f"{row.get('outside', float('nan')):.0f}", f"{row.get('dist', float('nan')):.2f}",
                    f"{row.get('KS', float('nan')):.2f}",
                ])
    header = ["scenario", "seed", "row", "ΔUA", "ΔRA", "ΔTA", "ΔMIA", "Avg. Gap", "RA ±1", "TA ≤ ref2+0.5",
              "outside %", "dist", "KS"]
    return markdown_table(header, rows) + "\n"
