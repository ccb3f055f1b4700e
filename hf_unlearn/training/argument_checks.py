"""The checks ``UnlearningArguments`` runs before any model loads: training values that would make a run "succeed"
without unlearning, and the method's hyperparameters (unknown names refused by name, pointing at their method)."""

from __future__ import annotations

import dataclasses
import json
import math

from ..methods import hyperparameter_owners
from ..methods.base import MethodConfig, UnlearningMethod


def check_training_values(args) -> None:
    """Refuse values that would make a run "succeed" without unlearning, or fail after the request was applied.

    A NaN or negative learning rate, a zero budget or a non-finite threshold used to run to the end (NaN
    weights saved, the request recorded) or fail inside the optimizer; here they fail before any model loads.
    """
    problems = []
    lr = args.learning_rate
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        problems.append(f"learning_rate must be a finite number > 0, got {lr!r}")
    has_step_budget = args.max_steps is not None and args.max_steps > 0  # replaces the epoch budget
    if not has_step_budget and not (math.isfinite(args.num_train_epochs) and args.num_train_epochs > 0):
        problems.append(f"num_train_epochs must be > 0 (or max_steps > 0), got {args.num_train_epochs!r}")
    if not args.per_device_train_batch_size or args.per_device_train_batch_size < 1:
        problems.append(f"per_device_train_batch_size must be >= 1, got {args.per_device_train_batch_size!r}")
    if args.gradient_accumulation_steps < 1:
        problems.append(f"gradient_accumulation_steps must be >= 1, got {args.gradient_accumulation_steps!r}")
    for name in ("max_grad_norm", "weight_decay", "utility_tolerance"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a finite number >= 0, got {value!r}")
    for name in ("class_forget_target", "class_forget_probability", "poison_forget_target"):
        value = getattr(args, name)
        if not math.isfinite(value):
            problems.append(f"{name} must be finite, got {value!r}")
    if args.control_samples < 1 or args.eval_retain_samples < 0 or args.cgs_batch_size < 1:
        problems.append("control_samples and cgs_batch_size must be >= 1 and eval_retain_samples >= 0")
    if problems:
        raise ValueError("Invalid unlearning arguments: " + "; ".join(problems) + ".")


def build_method_config(method_class: type[UnlearningMethod], config: MethodConfig | dict | str | None) -> MethodConfig:
    """The method's config from an instance, a dict or JSON; unknown names are refused by name."""
    config_class = method_class.config_class
    if isinstance(config, MethodConfig):
        if not isinstance(config, config_class):
            raise TypeError(
                f"Method {method_class.name!r} takes a {config_class.__name__}, got a {type(config).__name__}."
            )
        return config
    values = json.loads(config) if isinstance(config, str) else dict(config or {})
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "; ".join(
            f"{k} belongs to {', '.join(hyperparameter_owners(k))}" for k in unknown if hyperparameter_owners(k)
        )
        raise ValueError(
            f"Method {method_class.name!r} has no hyperparameter {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(known)) or 'none'}){'; ' + hints if hints else ''}. "
            f"See `hf-unlearn methods {method_class.name}`."
        )
    return config_class(**values)
