"""Shared fixtures: the embedded digits data and one small CNN trained on it per session.

The original model is trained with a plain torch loop on in-memory tensors (about two seconds),
and each test takes a deep copy, so tests never affect each other.
"""

import copy

import pytest
import torch

import hf_unlearn.models  # noqa: F401  (registers the small CNN with the Auto classes)
from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")


def train_small_cnn(dataset, epochs: int = 25, seed: int = 0) -> SmallCNNForImageClassification:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = SmallCNNForImageClassification(SmallCNNConfig())
        batch = dataset[:]
        x, y = batch["pixel_values"], batch["labels"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=generator).split(32):
                loss = model(pixel_values=x[idx], labels=y[idx]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _trained(digits):
    return train_small_cnn(digits["train"])


@pytest.fixture
def trained_model(_trained):
    return copy.deepcopy(_trained)
