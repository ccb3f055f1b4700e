"""Papers cited by more than one method (each method's own paper sits in its file)."""

from .base import Paper

GOLATKAR_2020 = Paper(
    title="Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
    authors="Golatkar, Aditya and Achille, Alessandro and Soatto, Stefano",
    venue="CVPR",
    year=2020,
    arxiv="1911.04933",
)
KURMANJI_2023 = Paper(
    title="Towards Unbounded Machine Unlearning",
    authors="Kurmanji, Meghdad and Triantafillou, Peter and Hayes, Jamie and Triantafillou, Eleni",
    venue="NeurIPS",
    year=2023,
    arxiv="2302.09880",
)
ZHOU_2025 = Paper(
    title="Efficient Utility-Preserving Machine Unlearning with Implicit Gradient Surgery",
    authors="Zhou and Yu and Zhang and Chang and Zhou and Wu and Zhao",
    venue="NeurIPS",
    year=2025,
    arxiv="2510.22124",
)
