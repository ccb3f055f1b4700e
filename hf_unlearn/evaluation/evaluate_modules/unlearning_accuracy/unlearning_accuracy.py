"""Unlearning accuracy (UA) as an ``evaluate`` module: ``evaluate.load(<path to this folder>)``.

Loads offline from the installed package; ``hf_unlearn.evaluation.metric_path("unlearning_accuracy")``
gives the path. The numbers match ``hf_unlearn.evaluation.metrics.unlearning_accuracy_from_outputs``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Unlearning accuracy (UA), as in SalUn (Fan et al., ICLR 2024) and ℓ1-sparse unlearning (Jia et
al., NeurIPS 2023): 100 minus the accuracy, in percent, of an unlearned model on the forget set.
Pass the model's predictions on the forget set. The target is not 100 but the UA of a model
retrained without the forget set (for random forgetting, roughly its test error). Called on retain
or test predictions, the returned `accuracy` is RA or TA.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels on the forget set.
    references (`list` of `int`): true labels.
Returns:
    accuracy (`float`): accuracy in percent.
    unlearning_accuracy (`float`): 100 − accuracy.
Examples:
    >>> ua = evaluate.load(hf_unlearn.evaluation.metric_path("unlearning_accuracy"))
    >>> ua.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    {'accuracy': 75.0, 'unlearning_accuracy': 25.0}
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


class UnlearningAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.size == 0:
            raise ValueError("Cannot compute an accuracy on zero examples.")
        accuracy = 100.0 * float(np.mean(predictions == references))
        return {"accuracy": accuracy, "unlearning_accuracy": 100.0 - accuracy}
