"""Serve three class-removal requests on a saved digits CNN (the SIGKILL test runs this, kills it, reruns it)."""

import sys

import torch

import hf_unlearn.models  # noqa: F401  (registers the small CNN)
from hf_unlearn import UnlearningArguments
from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.data.forget import indices_of_classes
from hf_unlearn.models import SmallCNNForImageClassification
from hf_unlearn.sequential import SequentialUnlearning


def main(model_folder: str, output_dir: str) -> None:
    torch.set_num_threads(1)
    data = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")
    model = SmallCNNForImageClassification.from_pretrained(model_folder)
    args = UnlearningArguments(output_dir=output_dir, method="pgu", max_steps=12, stop_rule="none",
                               check_every_steps=3, save_strategy="steps", save_steps=2, seed=0,
                               disable_tqdm=True, logging_strategy="no", report_to="none")
    requests = [indices_of_classes(data["train"], [c]) for c in (3, 5, 7)]
    SequentialUnlearning(model, args, data["train"], eval_dataset=data["validation"]).serve(requests)


if __name__ == "__main__":
    main(*sys.argv[1:3])
