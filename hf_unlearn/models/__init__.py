"""Small reference models, registered with the transformers Auto classes."""

from .small_cnn import SmallCNNConfig, SmallCNNForImageClassification

__all__ = ["SmallCNNConfig", "SmallCNNForImageClassification"]
