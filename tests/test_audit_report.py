"""The audit report from synthetic families: spread, ranking of examples, histogram, steps in n, the page."""

import numpy as np

from hf_unlearn.evaluation.audit_report import epsilon_histogram, num_models_steps, render_markdown, score_family


def _family(confidences: np.ndarray, accuracy: float = 90.0) -> dict:
    n = len(confidences)
    return {"confidences": confidences, "forget_accuracy": np.full(n, accuracy), "retain_accuracy": np.full(n, 99.0),
            "test_accuracy": np.full(n, accuracy), "seconds": np.ones(n), "incomplete_runs": None}


def test_a_peaky_family_is_told_apart_and_its_worst_example_is_named():
    rng = np.random.default_rng(0)
    mean = rng.normal(5, 2, 20)
    retrained = _family(mean + rng.normal(0, 1, (16, 20)))
    alike = score_family(_family(mean + rng.normal(0, 1, (16, 20))), retrained, list(range(100, 120)), [1] * 20)
    peaky = mean + rng.normal(0, 0.05, (16, 20))
    peaky[:, 7] += 4.0  # one example far off as well: the one named first
    narrow = score_family(_family(peaky, accuracy=81.0), retrained, list(range(100, 120)), [1] * 20, top_examples=3)
    assert 0.7 < alike["spread_ratio"] < 1.4 and narrow["spread_ratio"] < 0.1
    assert narrow["forget_score"] < alike["forget_score"] / 3
    assert narrow["ulira"]["auc"] > 0.9 > alike["ulira"]["auc"]
    assert len(narrow["most_distinguishable"]) == 3 and narrow["most_distinguishable"][0]["index"] == 107
    # the final score scales by retain (99/99) and test accuracy (81/90)
    assert narrow["final_score"] == narrow["forget_score"] * 0.9
    assert [s["num_models"] for s in alike["by_num_models"]] == [4, 8, 16]
    page = render_markdown({"setup": {"num_models": 16, "num_forget": 20}, "families": {"alike": alike,
                            "narrow": narrow}, "retrained": {k: 90.0 for k in ("forget_accuracy", "retain_accuracy",
                                                             "test_accuracy", "seconds_per_run")}})
    assert "## narrow" in page and "| 107 |" in page and "| n = 16 |" in page


def test_histogram_buckets_and_steps():
    # 16 models: buckets of 0.5 up to ceil(log 15) = 3, then beyond resolution, then the cap
    rows = epsilon_histogram(np.array([0.1, 0.2, 0.7, 2.9, 3.5, 50.0]), 16)
    assert [r["examples"] for r in rows] == [2, 1, 0, 0, 0, 1, 1, 1]
    assert rows[1]["points"] == 0.5 and rows[-1]["bucket"] == "separated"
    assert num_models_steps(3) == [3] and num_models_steps(8) == [4, 8] and num_models_steps(20) == [4, 8, 16, 20]
