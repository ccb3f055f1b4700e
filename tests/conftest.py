"""Shared fixtures: the embedded digits data and one small CNN trained on it per session.

The original model is trained with a plain torch loop on in-memory tensors (about two seconds),
and each test takes a deep copy, so tests never affect each other.
"""

import copy
import os
import tempfile

import pytest
import torch
from digits_models import fit_small_cnn
from test_text_models import _token_data, _train
from transformers import BertConfig, BertForSequenceClassification

import hf_unlearn.models  # noqa: F401  (registers the small CNN with the Auto classes)
from hf_unlearn.data.builtin import load_digits_dataset

# the ledger key file is created on first use: in a folder of the test run, never in the user's home;
# subprocesses (torchrun, the fault-injection recipe) inherit it and fingerprint with the same key
os.environ.pop("HF_UNLEARN_LEDGER_KEY", None)
os.environ["HF_UNLEARN_HOME"] = tempfile.mkdtemp(prefix="hf_unlearn_home_")


@pytest.fixture
def one_thread():
    """Tiny models: intra-op threads only add overhead, badly so on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")


@pytest.fixture(scope="session")
def _trained(digits):
    batch = digits["train"][:]
    return fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=25, lr=3e-3)


@pytest.fixture
def trained_model(_trained):
    return copy.deepcopy(_trained)


@pytest.fixture(scope="module")
def base_and_data():
    """A tiny BERT trained on three token classes, its training and validation sets (PEFT tests)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=3,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    train = _token_data()
    return _train(BertForSequenceClassification(config), train), train, _token_data(n=90, seed=1)
