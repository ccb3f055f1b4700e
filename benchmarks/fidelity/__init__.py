"""The fidelity suite: methods with library defaults against references on real HF models."""
