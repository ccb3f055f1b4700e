"""What several test modules share: one training loop for the small digits CNN (plain torch, seconds)
and one way to build ``UnlearningArguments``."""

import dataclasses

import torch

from hf_unlearn import UnlearningArguments
from hf_unlearn.methods import get_method
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification


def fit_small_cnn(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20, seed: int = 0, batch_size: int = 32,
                  optimizer: str = "adamw", lr: float = 2e-3) -> SmallCNNForImageClassification:
    """Train a fresh SmallCNN on in-memory tensors; ``optimizer`` is "adamw" or "sgd" (momentum 0.9)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = SmallCNNForImageClassification(SmallCNNConfig())
        if optimizer == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=generator).split(batch_size):
                loss = model(pixel_values=x[idx], labels=y[idx]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def make_args(tmp_path, method: str = "pgu", **kwargs) -> UnlearningArguments:
    """Quiet, seeded arguments; keyword names of the method's hyperparameters go to ``method_kwargs``."""
    names = {f.name for f in dataclasses.fields(get_method(method).config_class)} if method in _known() else set()
    method_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    base = dict(output_dir=str(tmp_path / "run"), disable_tqdm=True, report_to="none", seed=0, logging_strategy="no")
    return UnlearningArguments(method=method, method_kwargs=method_kwargs or None, **{**base, **kwargs})


def _known() -> set[str]:
    from hf_unlearn.methods import METHODS

    return set(METHODS)
