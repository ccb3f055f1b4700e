"""A small Linear + Conv1D model and the space of its inputs, for tests of projected steps."""

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from hf_unlearn.core import CoreGradientSpace, collect_gram_matrices


def small_model_and_space():
    """(model, space at γ = 0.9 on σ², inputs): inputs of falling scale, so the space keeps a few directions."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), Conv1D(5, 12))
    x = torch.randn(40, 6) * torch.linspace(1.0, 0.05, 6)
    stats = collect_gram_matrices(model, [x], show_progress=False)
    space = CoreGradientSpace(stats.grams, stats.layers, stats.num_examples, gamma=0.9, energy="sigma2")
    return model, space, x
