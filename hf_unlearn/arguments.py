"""``UnlearningArguments``: TrainingArguments plus what an unlearning run needs.

Subclassing ``TrainingArguments`` gives ``--help``, YAML configs and ``HfArgumentParser`` for free.
The defaults are the library's PGU defaults (see docs/defaults.md for how they were chosen); every
value is validated in ``__post_init__`` so a bad run fails before a model is even loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

SCENARIOS = ("auto", "samples", "class")
STOP_RULES = ("auto", "forget_below_validation", "class_removal", "none")
ENERGIES = ("sigma", "sigma2")


@dataclass
class UnlearningArguments(TrainingArguments):
    # ------------------------------------------------------------------ which method
    method: str = field(default="pgu", metadata={"help": "Unlearning method (see hf_unlearn.methods.METHODS)."})

    # ------------------------------------------------------------------ Core Gradient Space (PGU)
    gamma: float = field(
        default=0.8,
        metadata={"help": "Energy share of each layer's retain inputs that is protected (0 < gamma <= 1)."},
    )
    gamma_energy: str = field(
        default="sigma",
        metadata={"help": "How energy is measured: 'sigma' (singular values, PGU reference) or 'sigma2'."},
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
    cgs_batch_size: int = field(default=128, metadata={"help": "Batch size when collecting CGS statistics."})

    # ------------------------------------------------------------------ PGU's forget loss
    pgu_delta: float = field(default=0.05, metadata={"help": "PGU margin delta in -log(1 - (p_y - delta))."})
    pgu_forget_weight: float = field(default=1.0, metadata={"help": "Weight of PGU's margin term (w1)."})
    pgu_entropy_weight: float = field(default=0.2, metadata={"help": "Weight of PGU's negative-entropy term (w2)."})
    pgu_normalize_gradient: bool = field(
        default=False,
        metadata={
            "help": "PGU: divide each step's gradient by its global norm, so a saturated softmax (vanishing "
            "forget-loss gradient) still moves the model; the direction, and so the projection, is unchanged."
        },
    )

    # ------------------------------------------------------------------ stopping and evaluation
    scenario: str = field(
        default="auto",
        metadata={
            "help": "'samples', 'class', or 'auto': class when the forget labels are absent from the retain set."
        },
    )
    stop_rule: str = field(
        default="auto",
        metadata={
            "help": "'forget_below_validation' (stop once forget accuracy < validation accuracy), "
            "'class_removal' (stop once the forgotten classes are gone or retain accuracy drops), "
            "'none', or 'auto' (by scenario)."
        },
    )
    class_forget_target: float = field(
        default=1.0, metadata={"help": "Class removal: stop once forget accuracy (in percent) is at or below this."}
    )
    class_retain_drop: float = field(
        default=5.0, metadata={"help": "Class removal: stop once validation accuracy drops by this many points."}
    )
    eval_retain_samples: int = field(
        default=128, metadata={"help": "Retain examples sampled for the retain accuracy logged during training."}
    )

    # ------------------------------------------------------------------ how the forget set is chosen (recipe)
    forget_index_file: str | None = field(
        default=None, metadata={"help": "File of training-set row indices to forget (one per line, or JSON list)."}
    )
    forget_class: list[int] | None = field(default=None, metadata={"help": "Forget every example of these labels."})
    forget_fraction: float | None = field(default=None, metadata={"help": "Forget a random fraction of training."})
    forget_seed: int = field(default=0, metadata={"help": "Seed of the random forget fraction."})
    forget_filter: str | None = field(
        default=None, metadata={"help": "Forget rows where COLUMN==VALUE (also !=, <, >, in: 'user_id==17')."}
    )

    # ------------------------------------------------------------------ method hyperparameters (docs/methods.md)
    use_method_defaults: bool = field(
        default=True,
        metadata={
            "help": "Apply the method's recommended training values (its default_overrides: learning rate, optimizer "
            "arguments, epochs; docs/methods.md) to every field left at the library default."
        },
    )
    eupmu_epsilon: float = field(
        default=0.01,
        metadata={
            "help": "EUPMU: the retain loss must fall by this much in log per step before the multiplier stops "
            "rising (epsilon; Zhou et al., NeurIPS 2025, reference code eu_error=0.01)."
        },
    )
    eupmu_multiplier_lr: float = field(
        default=1.0, metadata={"help": "EUPMU: Adam learning rate of the multiplier w (Zhou et al. 2025 code: 1)."}
    )
    eupmu_multiplier_weight_decay: float = field(
        default=0.01, metadata={"help": "EUPMU: Adam weight decay of the multiplier w (Zhou et al. 2025 code: 0.01)."}
    )
    eupmu_explicit_epsilon: float = field(
        default=0.0,
        metadata={
            "help": "eupmu_explicit: the surgered direction d keeps <g_r, d> >= -epsilon (Zhou et al. 2025, "
            "Prop. 3.2; reference code default 0)."
        },
    )
    neggrad_alpha: float = field(
        default=0.99,
        metadata={
            "help": "NegGrad+: loss = alpha*CE(retain) - (1-alpha)*CE(forget) (Kurmanji et al., NeurIPS 2023, "
            "tuned per experiment there; 0.99 chosen on digits from 0.9, 0.95, 0.99)."
        },
    )
    scrub_alpha: float = field(
        default=0.001, metadata={"help": "SCRUB: weight of the retain distillation KL (Kurmanji et al. 2023 code)."}
    )
    scrub_gamma: float = field(
        default=0.99, metadata={"help": "SCRUB: weight of the retain cross-entropy (Kurmanji et al. 2023 code)."}
    )
    scrub_temperature: float = field(
        default=4.0, metadata={"help": "SCRUB: distillation temperature kd_T (Kurmanji et al. 2023 code)."}
    )
    scrub_max_epochs: float = field(
        default=2.0,
        metadata={"help": "SCRUB: epochs with the forget (max) term, msteps (Kurmanji et al. 2023 code: 2)."},
    )
    salun_mask_ratio: float = field(
        default=0.5,
        metadata={"help": "SalUn: share of weights updated, by forget-gradient saliency (Fan et al., ICLR 2024: 0.5)."},
    )
    salun_retain_weight: float = field(
        default=1.0,
        metadata={"help": "SalUn: weight of the retain cross-entropy (Fan et al. 2024, eq. 5; code: 1)."},
    )
    fisher_alpha: float = field(
        default=1e-4,
        metadata={
            "help": "Fisher forgetting: noise variance alpha / (Fisher / its mean) (Golatkar et al., CVPR 2020; "
            "1e-4 chosen on digits)."
        },
    )
    fisher_num_samples: int = field(
        default=1000, metadata={"help": "Fisher forgetting: retain examples used to estimate the diagonal Fisher."}
    )
    npo_beta: float = field(
        default=0.1, metadata={"help": "NPO: inverse temperature beta (Zhang et al., COLM 2024: 0.1)."}
    )

    # ------------------------------------------------------------------ TrainingArguments defaults for unlearning
    learning_rate: float = field(default=0.5, metadata={"help": "Learning rate (PGU default: SGD, 0.5)."})
    optim: str = field(default="sgd", metadata={"help": "Optimizer (any TrainingArguments optim)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    num_train_epochs: float = field(default=30.0, metadata={"help": "Upper bound; the stop rule usually ends earlier."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Forget examples per device and step."})
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping (0 disables)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to log forget/retain/test accuracy."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Logging strategy."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: batches have two streams."})

    def __post_init__(self):
        from .methods import METHODS
        from .methods.base import apply_default_overrides

        if self.method not in METHODS:
            raise ValueError(f"Unknown unlearning method {self.method!r}. Choose one of: {', '.join(sorted(METHODS))}.")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma}")
        if self.gamma_energy not in ENERGIES:
            raise ValueError(f"gamma_energy must be one of {ENERGIES}, got {self.gamma_energy!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.stop_rule not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {STOP_RULES}, got {self.stop_rule!r}")
        if not 0.0 <= self.pgu_delta < 1.0:
            raise ValueError(f"pgu_delta must lie in [0, 1), got {self.pgu_delta}")
        if self.pgu_forget_weight < 0 or self.pgu_entropy_weight < 0:
            raise ValueError("PGU loss weights must be non-negative")
        if self.forget_fraction is not None and not 0.0 < self.forget_fraction < 1.0:
            raise ValueError(f"forget_fraction must lie in (0, 1), got {self.forget_fraction}")
        chosen = [
            n for n in ("forget_index_file", "forget_class", "forget_fraction", "forget_filter") if getattr(self, n)
        ]
        if len(chosen) > 1:
            raise ValueError(f"Choose the forget set one way only; got {chosen}.")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False: unlearning batches carry forget and retain streams.")
        # method hyperparameters (docs/methods.md)
        if self.eupmu_epsilon < 0 or self.eupmu_explicit_epsilon < 0:
            raise ValueError("eupmu_epsilon and eupmu_explicit_epsilon must be non-negative")
        if self.eupmu_multiplier_lr <= 0 or self.eupmu_multiplier_weight_decay < 0:
            raise ValueError("eupmu_multiplier_lr must be positive and eupmu_multiplier_weight_decay non-negative")
        if not 0.0 <= self.neggrad_alpha <= 1.0:
            raise ValueError(f"neggrad_alpha must lie in [0, 1], got {self.neggrad_alpha}")
        if self.scrub_alpha < 0 or self.scrub_gamma < 0 or self.scrub_max_epochs < 0 or self.scrub_temperature <= 0:
            raise ValueError("SCRUB weights and scrub_max_epochs must be non-negative, scrub_temperature positive")
        if not 0.0 < self.salun_mask_ratio <= 1.0 or self.salun_retain_weight < 0:
            raise ValueError("salun_mask_ratio must lie in (0, 1] and salun_retain_weight be non-negative")
        if self.fisher_alpha < 0 or self.fisher_num_samples < 1:
            raise ValueError("fisher_alpha must be non-negative and fisher_num_samples at least 1")
        if self.npo_beta <= 0:
            raise ValueError(f"npo_beta must be positive, got {self.npo_beta}")
        method_class = METHODS[self.method]
        self.applied_method_defaults = apply_default_overrides(self, method_class) if self.use_method_defaults else {}
        super().__post_init__()

    @property
    def method_config(self) -> dict:
        """The fields a method reads, for model cards and reports."""
        return {
            k: getattr(self, k)
            for k in (
                "method",
                "gamma",
                "gamma_energy",
                "learning_rate",
                "optim",
                "num_train_epochs",
                "per_device_train_batch_size",
                "stop_rule",
            )
        }
