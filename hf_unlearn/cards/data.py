"""What a model card states about an unlearning run, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UnlearningCardData:
    """Everything a card says, as values (the trainer fills it; tests can write one by hand)."""

    model_name: str
    base_model: str
    method: str
    scenario: str
    forget_count: int
    optim: str
    learning_rate: float
    epochs: float
    stop_rule: str
    stopped_epoch: float | None = None
    method_config: dict = field(default_factory=dict)
    paper_title: str | None = None
    paper_url: str | None = None
    paper_bibtex: str | None = None
    projection: str | None = None  # e.g. "gamma=0.8, energy `sigma`"; None when no space was used
    ledger: list[dict] = field(default_factory=list)
    seconds: float | None = None
    comparison: dict[str, dict[str, float]] | None = None
    comparison_reference: str = ""  # how the reference was made, e.g. "fine-tuned from `org/base`"
    tags: list[str] = field(default_factory=list)
    unlearned: bool | None = None  # None: no run recorded (e.g. a card written before training)
    outcome: str = ""  # why the run ended, in words
    backtracks: int = 0
    growths: int = 0  # times the control doubled a stalled sample removal's step
    warnings: list[str] = field(default_factory=list)  # full-set utility drops measured at the end
    adapter: bool = False  # a PEFT adapter: the card says ``library_name: peft``
    merged_adapter_base: str = ""  # a LoRA adapter folder merged into this base before unlearning
    adapter_description: str = ""  # the adapter the unlearning was trained into ("r=8, alpha 16, on query, value")
    incomplete: str = ""  # the stop rule's target was not reached, in words
    space_published: bool = False  # core_gradient_space/ is part of the upload (push_core_gradient_space)
    measured: str = ""  # what the stop rule and the guard read, start → end, in words
    datasets: list[str] = field(default_factory=list)  # the training data's Hub ids (local folders are left out)
