"""``UnlearningArguments``: TrainingArguments plus what an unlearning run needs.

Subclassing ``TrainingArguments`` gives ``--help``, YAML configs and ``HfArgumentParser`` for free.
A method's own hyperparameters live in its ``MethodConfig`` (``method_kwargs``); the training
values a method recommends (optimizer, learning rate, epochs, batch) fill the fields the user left
``None``, once, so a value the user passes is never overwritten. Everything is validated in
``__post_init__`` so a bad run fails before a model is even loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..control.stop_rules import STOP_RULES
from ..core.energy import DEFAULT_ENERGY, DEFAULT_GAMMA, check_energy, check_gamma
from ..methods import METHODS, get_method, resolve_method
from ..methods.base import TRAINING_KEYS, MethodConfig
from ..methods.pgu import PGUConfig
from ..methods.pgu_retain import PGURetainConfig
from .argument_checks import build_method_config, check_training_values

SCENARIOS = ("auto", "samples", "class", "poison")
# what an unset training value becomes when the method recommends none (PGU's values)
LIBRARY_TRAINING_DEFAULTS = {
    "optim": "sgd",
    "learning_rate": 0.25,
    "num_train_epochs": 60.0,
    "per_device_train_batch_size": 32,
}


@dataclass
class UnlearningArguments(TrainingArguments):
    r"""Arguments of an ``UnlearningTrainer`` run: ``TrainingArguments`` plus what unlearning needs.

    Only the parameters specific to unlearning are listed; for the rest see ``transformers.TrainingArguments``.
    Some defaults differ from ``TrainingArguments`` (listed last). ``HfArgumentParser`` turns this class into
    command-line options, and every value is checked in ``__post_init__``, before a model is loaded.

    Parameters:
        > Which method

        method (`str`, defaults to `"auto"`):
            The unlearning method: ``"auto"`` (``pgu_retain`` when a retain set is given, ``pgu`` otherwise) or a
            name from ``hf_unlearn.methods.METHODS`` (``hf-unlearn methods`` lists them).
        method_kwargs (`dict`, `str` or `None`, defaults to `None`):
            The method's hyperparameters (its ``MethodConfig`` fields) as a dict or JSON; unknown names are refused.

        > The Core Gradient Space (the projected methods: ``pgu``, ``pgu_retain``, ``ga_projected``)

        gamma (`float` or `None`, defaults to `None`):
            Energy share of each layer's retained inputs that is protected, in (0, 1]. ``None`` keeps the space's own
            (the gamma it was built or last saved with; 0.8 for a space this run builds); a value replaces it for
            this run, and the log says so.
        gamma_energy (`str` or `None`, defaults to `None`):
            How energy is measured: ``"sigma"`` (singular values, PGU's reference code) or ``"sigma2"``
            (eigenvalues). ``None`` keeps the space's own (``"sigma"`` for a space this run builds).
        protect_layers (`list[str]` or `None`, defaults to `None`):
            Glob or regex patterns of the layers to protect; ``None`` protects every supported layer.
        exclude_layers (`list[str]` or `None`, defaults to `None`):
            Layer patterns never protected.
        freeze_bias_and_norm (`bool`, defaults to `True`):
            Freeze biases and normalisation layers, which have no input space to protect.
        train_unprotected (`bool`, defaults to `False`):
            Also train parameters the space cannot protect (embeddings, grouped convolutions).
        unproject_forgotten_outputs (`bool`, defaults to `True`):
            Class removal: the output layer's rows of the forgotten classes move unprojected.
        lora_aim_at_forget (`bool`, defaults to `True`):
            A fresh LoRA adapter's ``A`` is set to the directions outside the retain space where the forget inputs
            carry most energy, instead of PEFT's random ``A``.
        cgs_batch_size (`int`, defaults to `128`):
            Batch size of the passes that collect the space's statistics.

        > Causal language models

        lm_mask_prompt (`bool`, defaults to `True`):
            Prompt/answer examples: only the answer's tokens are learned or forgotten.
        lm_max_length (`int` or `None`, defaults to `None`):
            Cut tokenised texts to this many tokens (``None``: no cut).

        > Stop rules and the utility guard

        scenario (`str`, defaults to `"auto"`):
            ``"samples"``, ``"class"``, ``"poison"`` or ``"auto"`` (class removal when the forget labels are absent
            from the retain set, else samples).
        stop_rule (`str`, defaults to `"auto"`):
            ``"forget_below_validation"``, ``"class_removal"``, ``"poison_removed"``, ``"none"`` or ``"auto"``
            (by scenario).
        free_embedding_rows (`bool`, defaults to `True`):
            Text classifiers: input-embedding rows of tokens only forget examples use move unprojected.
        sample_removal_target (`str`, defaults to `"cautious"`):
            What "looks like held-out data" means to the sample-removal rule: ``"validation"``, ``"neighbours"`` or
            ``"cautious"`` (the higher of the two); docs/fidelity.md, "Sample-removal target".
        class_forget_target (`float`, defaults to `1.0`):
            Class removal stops once forget accuracy (percent) is at or below this...
        class_forget_probability (`float`, defaults to `0.05`):
            ...and the forgotten classes' mean probability on the forget set is at or below this.
        poison_forget_target (`float`, defaults to `5.0`):
            Poison removal stops once at most this percent of the poisoned examples get their poisoned labels.
        check_every_steps (`int`, defaults to `0`):
            Optimizer steps between the checks that drive the guard and the stop rule (0: about two per epoch).
        utility_tolerance (`float`, defaults to `3.0`):
            Points of retain or validation accuracy a check may lose before the run rolls back and shrinks the step.
        max_backtracks (`int`, defaults to `6`):
            Rollbacks before the run stops at its best good state.
        step_growth (`float` or `None`, defaults to `None`):
            Factor a stalled sample removal's learning rate grows by (1 never grows; ``None``: the method's).
        control_samples (`int`, defaults to `256`):
            At most this many forget and validation examples per check (cached).
        eval_retain_samples (`int`, defaults to `128`):
            Retain examples sampled for the retain accuracy logged during training.

        > Publishing

        push_core_gradient_space (`bool`, defaults to `False`):
            Also upload the space and its ledger with ``push_to_hub`` (needed to serve later requests from the Hub).
        push_core_gradient_space_dtype (`str`, defaults to `"float32"`):
            Storage type of the uploaded space: ``"float32"`` (half the size) or ``"float64"``.
        acknowledge_space_history (`bool`, defaults to `False`):
            Push the space although it records served requests or the repo's history holds one: two published
            versions reveal the rows forgotten between them. Only when no earlier version is public anywhere.

        > Parameters whose defaults differ from ``TrainingArguments``

        learning_rate (`float` or `None`, defaults to `None`):
            ``None``: the method's recommended value (PGU: 0.25 with SGD); ``TrainingArguments``: 5e-5.
        optim (`str` or `None`, defaults to `None`):
            ``None``: the method's optimizer (PGU: ``"sgd"``, the others AdamW).
        num_train_epochs (`float` or `None`, defaults to `None`):
            An upper bound on passes over the forget set; ``None``: the method's (PGU: 60).
        per_device_train_batch_size (`int` or `None`, defaults to `None`):
            Forget examples per device and step; ``None``: the method's (32 when it names none).
        lr_scheduler_type (`str`, defaults to `"constant"`):
            ``TrainingArguments``: ``"linear"``. The step size is steered by the guard's rollbacks and the step
            growth, which scale it from its current value.
        max_grad_norm (`float`, defaults to `5.0`):
            Gradient clipping (0 disables); ``TrainingArguments``: 1.0.
        logging_strategy (`str`, defaults to `"epoch"`):
            ``TrainingArguments``: ``"steps"``. The checks log their metrics at every check regardless.
        save_strategy (`str`, defaults to `"no"`):
            ``TrainingArguments``: ``"steps"``. Checkpoints are opt-in; ``resume_from_checkpoint`` resumes from one.
        save_total_limit (`int` or `None`, defaults to `2`):
            ``TrainingArguments``: ``None`` (keep all). The newest checkpoint and the one before it: a resume
            needs one complete checkpoint even when the newest was cut off mid-write.
        remove_unused_columns (`bool`, defaults to `False`):
            Must stay ``False``: every batch carries a forget and a retain stream.
        dataloader_pin_memory (`bool` or `None`, defaults to `None`):
            ``None``: pin only when a GPU is present.
    """

    # ------------------------------------------------------------------ which method
    method: str = field(
        default="auto",
        metadata={
            "help": "Unlearning method: 'auto' (the default path: pgu_retain when a retain set is given, pgu "
            f"otherwise) or one of {', '.join(METHODS)} (`hf-unlearn methods NAME`)."
        },
    )
    method_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "The method's hyperparameters as a dict (JSON on the command line); on the recipe's command "
            "line and in YAML they can also be given by name (e.g. --pgu_delta 0.1)."
        },
    )

    # ------------------------------------------------------------------ Core Gradient Space (PGU)
    gamma: float | None = field(
        default=None,
        metadata={
            "help": "Energy share of each layer's retain inputs that is protected (0 < gamma <= 1). Default: the "
            f"space's own (the gamma it was built or last saved with), {DEFAULT_GAMMA} for a space this run builds. "
            "Set, it replaces the space's (and the log says so)."
        },
    )
    gamma_energy: str | None = field(
        default=None,
        metadata={
            "help": "How energy is measured: 'sigma' (singular values, PGU reference) or 'sigma2' (eigenvalues). "
            f"Default: the space's own, '{DEFAULT_ENERGY}' for a space this run builds; set, it replaces the space's."
        },
    )
    protect_layers: list[str] | None = field(
        default=None, metadata={"help": "Glob/regex patterns of the layers to protect (default: all supported)."}
    )
    exclude_layers: list[str] | None = field(default=None, metadata={"help": "Layer patterns never protected."})
    freeze_bias_and_norm: bool = field(
        default=True,
        metadata={"help": "Freeze biases and normalisation layers (they have no input space to protect)."},
    )
    train_unprotected: bool = field(
        default=False,
        metadata={"help": "PGU: also train parameters the space cannot protect (embeddings, grouped convs)."},
    )
    unproject_forgotten_outputs: bool = field(
        default=True,
        metadata={
            "help": "Class removal with PGU: the output layer's rows for the forgotten classes move unprojected (a "
            "retrained model never predicts those classes, on kept inputs either); all other updates stay projected."
        },
    )
    lora_aim_at_forget: bool = field(
        default=True,
        metadata={
            "help": "Projected methods (PGU, EUPMU) through a fresh LoRA adapter (B still zero): set its A to the "
            "directions outside the retain space where the forget inputs carry most energy (no prediction changes "
            "while B is zero), instead of PEFT's random A, which made steps crawl. False keeps PEFT's A (projected)."
        },
    )
    cgs_batch_size: int = field(default=128, metadata={"help": "Batch size when collecting CGS statistics."})
    lm_mask_prompt: bool = field(
        default=True,
        metadata={
            "help": "Causal LMs, prompt/answer examples: only the answer's tokens are learned or forgotten (the "
            "prompt's labels are -100)."
        },
    )
    lm_max_length: int | None = field(
        default=None, metadata={"help": "Causal LMs: cut tokenised texts to this many tokens (default: no cut)."}
    )

    # ------------------------------------------------------------------ stopping and evaluation
    scenario: str = field(default="auto", metadata={
        "help": "'samples', 'class', 'poison' (the forget examples carry wrong labels or a backdoor trigger: a "
        "model trained without them would not give them those labels), or 'auto': class when the forget labels "
        "are absent from the retain set, else samples."})
    stop_rule: str = field(default="auto", metadata={
        "help": "'forget_below_validation' (stop once forget accuracy <= the original's validation accuracy), "
        "'class_removal' (stop once the forgotten classes are gone or retain accuracy drops), "
        "'poison_removed' (stop once the poisoned labels are rarely predicted on the poisoned examples), "
        "'none', or 'auto' (by scenario)."})
    free_embedding_rows: bool = field(default=True, metadata={"help": "Text classifiers with a retain set: the "
        "input-embedding rows of tokens only forget examples use move unprojected (no kept input reads them)."})
    sample_removal_target: str = field(default="cautious", metadata={
        "help": "Sample removal's target: 'validation' (the whole validation sample's accuracy and confidence), "
        "'neighbours' (moved by how the validation examples nearest the forget examples differ from those nearest "
        "retain examples) or 'cautious' (the higher of the two).", "choices": ["cautious", "neighbours", "validation"]})
    class_forget_target: float = field(
        default=1.0, metadata={"help": "Class removal: stop once forget accuracy (in percent) is at or below this..."}
    )
    class_forget_probability: float = field(
        default=0.05,
        metadata={"help": "...and the forgotten classes' mean probability on the forget set is at or below this."},
    )
    poison_forget_target: float = field(
        default=5.0,
        metadata={
            "help": "Poison removal: stop once the poisoned examples get their (poisoned) labels on at most this "
            "percent of them."
        },
    )
    check_every_steps: int = field(
        default=0,
        metadata={"help": "Optimizer steps between the checks that drive the guard and stop rule (0: 2 per epoch)."},
    )
    utility_tolerance: float = field(
        default=3.0,
        metadata={
            "help": "Utility guard: points of retain-sample or validation accuracy a check may lose against the "
            "original before the run rolls back to the last good state and shrinks the learning rate."
        },
    )
    max_backtracks: int = field(
        default=6, metadata={"help": "Utility guard: learning-rate halvings before the run stops at its best state."}
    )
    step_growth: float | None = field(
        default=None,
        metadata={
            "help": "Sample removal: factor the learning rate grows by (at most twice, back down near the target, "
            "never after a rollback) when the forget set's confidence is, at the last check's pace, more than 8 "
            "checks from its target. 1 disables; default: the method's (PGU 2, other methods 1)."
        },
    )
    control_samples: int = field(
        default=256, metadata={"help": "At most this many forget and validation examples per check (cached)."}
    )
    eval_retain_samples: int = field(
        default=128, metadata={"help": "Retain examples sampled for the retain accuracy logged during training."}
    )
    push_core_gradient_space: bool = field(
        default=False,
        metadata={
            "help": "Also upload the Core Gradient Space (with its ledger) when pushing: whoever serves later "
            "deletion requests from the Hub copy needs it. Off by default: it can be larger than the model."
        },
    )
    push_core_gradient_space_dtype: str = field(
        default="float32",
        metadata={"help": "Storage type of the uploaded space: float32 (half the size) or float64.",
                  "choices": ["float32", "float64"]},
    )
    acknowledge_space_history: bool = field(
        default=False,
        metadata={
            "help": "Push the Core Gradient Space although it records served requests or the repo's history holds "
            "a space: two published versions reveal the rows forgotten between them (docs/guarantees.md). Only "
            "when no earlier version of this space is public anywhere."
        },
    )

    # ------------------------------------------------------------------ TrainingArguments defaults for unlearning
    # None = unset: filled once from the method's recommended values (its MethodConfig.training_defaults)
    learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate (default: the method's, e.g. PGU SGD 0.25; hf-unlearn methods)."}
    )
    optim: str | None = field(default=None, metadata={"help": "Optimizer (default: the method's, e.g. PGU 'sgd')."})
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "Upper bound on epochs over the forget set (default: the method's)."}
    )
    per_device_train_batch_size: int | None = field(
        default=None, metadata={"help": "Forget examples per device and step (default: the method's)."}
    )
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping (0 disables)."})
    eval_strategy: str = field(
        default="no", metadata={"help": "Full evaluations (the step-level checks run and log regardless)."}
    )
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the newest two; None keeps all)."}
    )
    logging_strategy: str = field(default="epoch", metadata={"help": "Logging strategy."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: batches have two streams."})
    dataloader_pin_memory: bool | None = field(
        default=None, metadata={"help": "Pin DataLoader memory (default: only when a GPU is present)."}
    )

    def __post_init__(self):
        if self.gamma is not None:
            self.gamma = check_gamma(self.gamma)
        if self.gamma_energy is not None:
            check_energy(self.gamma_energy, "gamma_energy")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.stop_rule not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {STOP_RULES}, got {self.stop_rule!r}")
        if self.lm_max_length is not None and self.lm_max_length < 2:
            raise ValueError(f"lm_max_length must be at least 2 (a token to predict from and one to predict), got "
                             f"{self.lm_max_length}")
        if self.utility_tolerance < 0 or self.max_backtracks < 0 or self.check_every_steps < 0:
            raise ValueError("utility_tolerance, max_backtracks and check_every_steps must be non-negative")
        if self.step_growth is not None and not self.step_growth >= 1.0:
            raise ValueError(f"step_growth must be at least 1 (1 never grows the step), got {self.step_growth}")
        if self.push_core_gradient_space_dtype not in ("float32", "float64"):
            raise ValueError(
                "push_core_gradient_space_dtype must be 'float32' or 'float64', "
                f"got {self.push_core_gradient_space_dtype!r}"
            )
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False: unlearning batches carry forget and retain streams.")
        if self.load_best_model_at_end:
            # the Trainer would reload the checkpoint its metric liked best over the state the stop rule and the
            # guard kept: with eval_forget_accuracy that is the untouched start, reported as unlearned
            raise ValueError(
                "load_best_model_at_end must be False: the unlearning control already keeps the state its stop rule "
                "and utility guard chose, and a checkpoint picked by a metric could replace it with one the card "
                "would misdescribe (by forget accuracy, the untouched original). Leave it off; the run's own "
                "checkpoints still save with save_strategy."
            )
        self.set_method_config(self.method_kwargs)
        check_training_values(self)
        if self.dataloader_pin_memory is None:  # pinning without an accelerator only warns, every epoch
            self.dataloader_pin_memory = torch.cuda.is_available()
        if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.use_cpu = True  # several processes and no GPU: gloo on CPU (else each process runs alone)
        super().__post_init__()

    def resolve_default_path(self, has_retain: bool) -> None:
        """Turn ``method="auto"`` into the method it means for this run (called by the trainer)."""
        if self.method != "auto":
            return
        self.method = resolve_method("auto", has_retain)
        values = self.method_config.to_dict()
        if self.method == "pgu":  # the retain terms' settings have nothing to act on: refused when set
            retain_only = set(PGURetainConfig.__dataclass_fields__) - set(PGUConfig.__dataclass_fields__)
            for name in sorted(retain_only):
                if values.pop(name) != getattr(PGURetainConfig, name):
                    raise ValueError(f"{name} was set, but there is no retain set: pass retain_dataset=...")
        self.set_method_config(values)

    def set_method_config(self, config: MethodConfig | dict | str | None) -> None:
        """Validate the method's hyperparameters and fill every unset training value from the method.

        ``config`` is the method's ``MethodConfig``, a dict of its fields, or that dict as JSON. A
        training value the user set (not ``None``) is never replaced.
        """
        method_class = get_method(self.method)
        self.method_config = build_method_config(method_class, config)
        self.method_kwargs = self.method_config.to_dict()
        applied = getattr(self, "method_defaults_applied", {})
        for key in TRAINING_KEYS:
            if getattr(self, key) is None or applied.get(key, object()) == getattr(self, key):  # not the user's
                value = method_class.config_class.training_defaults.get(key, LIBRARY_TRAINING_DEFAULTS[key])
                setattr(self, key, value)
                applied[key] = value
        self.method_defaults_applied = applied
