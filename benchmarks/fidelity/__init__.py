"""The fidelity suite (issue 9): methods with library defaults against references on real HF models."""
