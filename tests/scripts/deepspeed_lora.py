"""LoRA through PEFT, ga_projected with SGD, under DeepSpeed ZeRO-2/3 or DDP (tests/test_deepspeed.py runs them).

``python deepspeed_lora.py OUT [DEEPSPEED_CONFIG]`` under torch.distributed.run; rank 0 writes the adapter
weights, the outcome and the largest protected share of a LoRA A matrix to OUT/result.pt.
"""

import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).parents[1]))
from rank_exit import leave
from text_fixtures import fit_token_classifier, marker_token_data, tiny_bert_config  # noqa: E402

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer  # noqa: E402
from hf_unlearn.data.forget import split_forget_retain  # noqa: E402
from hf_unlearn.utils.zero3 import whole_parameters  # noqa: E402


def main(out: str, deepspeed: str | None) -> None:
    torch.manual_seed(0)
    train, validation = marker_token_data(), marker_token_data(n=90, seed=1)
    base = fit_token_classifier(BertForSequenceClassification(tiny_bert_config()), train)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=["query", "value", "dense"]))
    forget, retain = split_forget_retain(train, list(range(0, len(train), 10)))
    args = UnlearningArguments(output_dir=out, disable_tqdm=True, logging_strategy="no", seed=0, gamma=0.9,
                               method="ga_projected", optim="sgd", learning_rate=0.5, num_train_epochs=3,
                               stop_rule="none", per_device_train_batch_size=8, deepspeed=deepspeed,
                               use_cpu=deepspeed is None)
    trainer = UnlearningTrainer(model=lora, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=validation, core_gradient_space=space)
    trainer.train()
    with whole_parameters(list(lora.parameters())):  # ZeRO-3 keeps them partitioned: gathered (collective)
        leaks = [
            ((weight.detach().double() @ trainer.core_gradient_space.basis(key.split("#")[0]).double()).norm()
             / weight.norm()).item()
            for key, weight in trainer.projection.weights.items() if "#lora_A." in key
        ]
        weights = {n: p.detach().clone() for n, p in lora.named_parameters()}
    if trainer.args.process_index == 0:
        torch.save({"weights": weights, "leak": max(leaks),
                    "adapters": len(leaks), "unlearned": trainer.outcome.unlearned,
                    "change": trainer.outcome.weight_change,
                    "hooks": None if deepspeed is None else trainer.protection.gradient_hooks.attached,
                    }, Path(out) / "result.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    leave()
