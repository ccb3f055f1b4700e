"""Membership AUC of a causal LM's texts as an ``evaluate`` module: ``evaluate.load(<path to this folder>)``.

Loads offline from the installed package; ``hf_unlearn.evaluation.metric_path("lm_membership_auc")``
gives the path. It calls ``hf_unlearn.evaluation.lm.membership_auc``, so the numbers are the library's.
"""

import datasets
import evaluate
import numpy as np

from hf_unlearn.evaluation.lm import membership_auc

GROUPS = ("member", "held_out")

_DESCRIPTION = """
How well one per-text score tells the texts a causal LM was trained on (or is meant to have forgotten)
from held-out texts: the ROC AUC of a threshold on the score, where a lower score means "looks trained on".
Scores are what `hf_unlearn.evaluation.lm.sequence_scores` returns per text: the mean token loss, the zlib
ratio (loss over the zlib-compressed length, Carlini et al. 2021) or min-k % (the mean negative
log-probability of the k % least likely tokens, Shi et al. 2024). 0.5: indistinguishable; compare an
unlearned model's value on its forget texts with a model fine-tuned without them, not with 0.5.
"""

_KWARGS_DESCRIPTION = """
Args:
    scores (`list` of `float`): one score per text, lower = more like training data.
    group (`list` of `str`): "member" (e.g. the forget texts) or "held_out" for each text.
Returns:
    membership_auc (`float`): in [0, 1].
Examples:
    >>> auc = evaluate.load(hf_unlearn.evaluation.metric_path("lm_membership_auc"))
    >>> auc.compute(scores=[0.1, 0.2, 2.5, 3.0], group=["member", "member", "held_out", "held_out"])
    {'membership_auc': 1.0}
"""

_CITATION = """
@inproceedings{carlini2021extracting,
  title={Extracting Training Data from Large Language Models},
  author={Carlini, Nicholas and Tramer, Florian and Wallace, Eric and others},
  booktitle={USENIX Security Symposium},
  year={2021}
}
"""


class LMMembershipAUC(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"scores": datasets.Value("float64"), "group": datasets.Value("string")}),
        )

    def _compute(self, scores, group):
        group = np.asarray(group)
        unknown = sorted(set(group.tolist()) - set(GROUPS))
        if unknown:
            raise ValueError(f"Unknown group values {unknown}; use {GROUPS}.")
        values = np.asarray(scores, dtype=np.float64)
        member, held_out = values[group == "member"], values[group == "held_out"]
        if not len(member) or not len(held_out):
            raise ValueError("Both groups need at least one text: 'member' and 'held_out'.")
        return {"membership_auc": membership_auc({"loss": member}, {"loss": held_out}, "loss")}
