"""SalUn's MIA-efficacy as an ``evaluate`` module: ``evaluate.load(<path to this folder>)``.

Loads offline from the installed package; ``hf_unlearn.evaluation.metric_path("mia_efficacy")``
gives the path. It calls ``hf_unlearn.evaluation.metrics.mia_efficacy_from_features``, so the
numbers are those of the library function.
"""

import datasets
import evaluate
import numpy as np

from hf_unlearn.evaluation.metrics import mia_efficacy_from_features

GROUPS = ("member", "non_member", "forget")

_DESCRIPTION = """
MIA-efficacy (SalUn, Fan et al., ICLR 2024): a membership-inference attacker is trained to tell
members (retain examples, which the model was trained on) from non-members (test examples) by the
model's per-example confidence features; the result is the share, in percent, of forget examples it
calls non-members. The two training groups are balanced by subsampling the larger one with `seed`.
The default attacker is SalUn's RBF SVC (C=3, gamma="auto", unscaled features); `attacker="logistic"`
uses a standardised logistic regression. Compare with the value of a model retrained without the
forget set, not with 100.

Each example is one row: `scores` are its attack features (a list of floats, e.g. the softmax
probability of the true label — SalUn's choice — or [confidence, entropy, loss], or a single float
such as the loss) and `group` says which set it comes from: "member", "non_member" or "forget".
"""

_KWARGS_DESCRIPTION = """
Args:
    scores (`list` of `list` of `float`, or `list` of `float`): per-example attack features.
    group (`list` of `str`): "member", "non_member" or "forget" for each row.
    attacker (`str`, default "svc"): "svc" or "logistic".
    seed (`int`, default 0): seed of the balancing subsample.
Returns:
    mia_efficacy (`float`): percent of forget examples predicted non-member.
Examples:
    >>> mia = evaluate.load(hf_unlearn.evaluation.metric_path("mia_efficacy"))
    >>> mia.compute(scores=[[0.99], [0.98], [0.6], [0.5], [0.97]],
    ...             group=["member", "member", "non_member", "non_member", "forget"])
"""

_CITATION = """
@inproceedings{fan2024salun,
  title={SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
         Classification and Generation},
  author={Fan, Chongyu and Liu, Jiancheng and Zhang, Yihua and Wong, Eric and Wei, Dennis and Liu, Sijia},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""


class MIAEfficacy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "scores": datasets.Sequence(datasets.Value("float64")),
                        "group": datasets.Value("string"),
                    }
                ),
                datasets.Features({"scores": datasets.Value("float64"), "group": datasets.Value("string")}),
            ],
        )

    def _compute(self, scores, group, attacker="svc", seed=0):
        group = np.asarray(group)
        unknown = sorted(set(group.tolist()) - set(GROUPS))
        if unknown:
            raise ValueError(f"Unknown group values {unknown}; use {GROUPS}.")
        features = np.asarray(scores, dtype=np.float64)
        if features.ndim == 1:
            features = features[:, None]
        sets = [features[group == name] for name in GROUPS]
        return {"mia_efficacy": mia_efficacy_from_features(*sets, attacker=attacker, seed=seed)}
