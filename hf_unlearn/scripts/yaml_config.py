"""``--config FILE.yaml`` for the recipe: option: value pairs that become the parser's defaults.

Paths that start with ``./`` or ``../`` are taken relative to the file, so a config works from any
directory; a key no option knows is refused by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from ..methods import hyperparameter_owners

PATH_KEYS = (
    "model_name_or_path",
    "dataset_name",
    "data_files",
    "validation_file",
    "core_gradient_space",
    "retrain_cache_dir",
    "reference_model",
    "retrain_base_model",
    "push_dry_run",
    "forget_index_file",
    "output_dir",
    "logging_dir",
)


def _relative_to(base: Path, value):
    """``./x`` and ``../x`` are relative to the config file, so a config works from any directory.

    Normalised, not resolved: a path that is a link (the text recipe's ``base/``) stays the path the user wrote.
    """
    if isinstance(value, list):
        return [_relative_to(base, v) for v in value]
    if isinstance(value, str) and value.startswith(("./", "../")):
        return os.path.normpath(base / value)
    return value


def load_yaml_config(path: str) -> dict:
    """The file's options; paths that start with ``./`` or ``../`` are taken relative to the file."""
    config_path = Path(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    values = yaml.safe_load(config_path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values.")
    base = config_path.resolve().parent
    return {k: _relative_to(base, v) if k in PATH_KEYS else v for k, v in values.items()}


def apply_yaml_defaults(parser: HfArgumentParser, values: dict, source: str, method: str) -> None:
    """The file's values become the parser's defaults (flags still win); a key no option knows is refused by name,
    with the methods it belongs to when it is another method's hyperparameter."""
    known = {action.dest for action in parser._actions}
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        hints = "".join(
            f" ({k} is a hyperparameter of {', '.join(hyperparameter_owners(k))}, not of {method})"
            for k in unknown
            if hyperparameter_owners(k)
        )
        raise ValueError(f"{source}: unknown option(s) {', '.join(unknown)}{hints}.")
    for action in parser._actions:
        if action.dest in values:
            action.required = False  # the file provides it; the command line may still override it
    parser.set_defaults(**values)
