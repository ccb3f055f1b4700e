"""A small image classifier that behaves like any transformers model.

The embedded demo data (sklearn digits, 8×8) is too small for the Hub's vision backbones, so the
library ships this CNN as a real ``PreTrainedModel``: it saves, loads through
``AutoModelForImageClassification``, trains with ``Trainer`` and pushes to the Hub like any other.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput


class SmallCNNConfig(PretrainedConfig):
    model_type = "hf_unlearn_small_cnn"

    def __init__(
        self,
        num_channels: int = 1,
        image_size: int = 8,
        conv_channels: tuple[int, ...] = (16, 32),
        hidden_size: int = 64,
        num_labels: int = 10,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.conv_channels = list(conv_channels)
        self.hidden_size = hidden_size
        super().__init__(num_labels=num_labels, **kwargs)


class SmallCNNForImageClassification(PreTrainedModel):
    """conv 3×3 → ReLU → conv 3×3 stride 2 → ReLU → … → linear → ReLU → linear head."""

    config_class = SmallCNNConfig
    main_input_name = "pixel_values"

    def __init__(self, config: SmallCNNConfig):
        super().__init__(config)
        layers, channels, size = [], config.num_channels, config.image_size
        for i, out_channels in enumerate(config.conv_channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1), nn.ReLU()]
            channels, size = out_channels, (size - 1) // stride + 1
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Linear(channels * size * size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput:
        features = self.features(pixel_values).flatten(1)
        hidden = torch.relu(self.hidden(features))
        logits = self.classifier(hidden)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=(features, hidden) if output_hidden_states else None
        )


AutoConfig.register(SmallCNNConfig.model_type, SmallCNNConfig, exist_ok=True)
AutoModelForImageClassification.register(SmallCNNConfig, SmallCNNForImageClassification, exist_ok=True)
