"""Run under torchrun: a plain Trainer run on digits with CoreGradientSpaceCallback (mode in argv[2]), two gloo ranks;
the model and its space are saved to argv[1]."""

import sys

import torch
from rank_exit import leave
from transformers import Trainer, TrainingArguments

from hf_unlearn import CoreGradientSpaceCallback
from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    data = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")
    torch.manual_seed(0)
    model = SmallCNNForImageClassification(SmallCNNConfig())
    args = TrainingArguments(output_dir=out, num_train_epochs=2, per_device_train_batch_size=32, learning_rate=3e-3,
                             report_to="none", disable_tqdm=True, save_strategy="no", logging_strategy="no",
                             use_cpu=True, seed=0, ddp_find_unused_parameters=False)
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], callbacks=[CoreGradientSpaceCallback(mode)])
    trainer.train()
    trainer.save_model()
    leave()
