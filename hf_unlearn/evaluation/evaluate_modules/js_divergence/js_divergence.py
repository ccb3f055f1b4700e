"""Jensen–Shannon divergence between two models' outputs, as an ``evaluate`` module.

Load with ``evaluate.load(<path to this folder>)``; it works offline from the installed package and
``hf_unlearn.evaluation.metric_path("js_divergence")`` gives the path. It calls the functions of
``hf_unlearn.evaluation.distance``, so the numbers are those of the library.
"""

import datasets
import evaluate
import torch

from hf_unlearn.evaluation.distance import js_divergence_from_logits, js_divergence_from_probs

_DESCRIPTION = """
Mean Jensen–Shannon divergence (natural log, so in [0, ln 2]) between two models' output
distributions on the same examples — in unlearning, the unlearned model (`predictions`) and the
model retrained without the forget set (`references`), on the forget set. 0 means the two models
give identical outputs. Inputs are logits (default; softmax is applied) or probability vectors
(`inputs="probabilities"`; rows are renormalised). Both must have the same number of classes.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-example logits or probabilities of model A.
    references (`list` of `list` of `float`): the same for model B, same examples and classes.
    inputs (`str`, default "logits"): "logits" or "probabilities".
Returns:
    js_divergence (`float`): mean over examples, in nats.
Examples:
    >>> js = evaluate.load(hf_unlearn.evaluation.metric_path("js_divergence"))
    >>> js.compute(predictions=[[1.0, 0.0]], references=[[0.0, 1.0]], inputs="probabilities")
    {'js_divergence': 0.6931471805599453}
"""

_CITATION = """
@article{lin1991divergence,
  title={Divergence measures based on the Shannon entropy},
  author={Lin, Jianhua},
  journal={IEEE Transactions on Information Theory},
  volume={37}, number={1}, pages={145--151}, year={1991}
}
"""


class JSDivergence(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, predictions, references, inputs="logits"):
        a = torch.tensor(predictions, dtype=torch.float64)
        b = torch.tensor(references, dtype=torch.float64)
        if inputs == "logits":
            return {"js_divergence": js_divergence_from_logits(a, b)}
        if inputs == "probabilities":
            return {"js_divergence": js_divergence_from_probs(a, b)}
        raise ValueError(f"inputs must be 'logits' or 'probabilities', got {inputs!r}.")
