"""``hf-unlearn methods [NAME]``: the registered methods, or one method's hyperparameters and paper.

The recipe's ``--method NAME --help`` shows the same fields among all the run's options; this is
the short answer to "what can I set for NAME, and where does it come from".
"""

from __future__ import annotations

import dataclasses
import sys

from ..methods import METHODS, get_method


def describe(name: str) -> str:
    method = get_method(name)
    config = method.config_class
    summary = (sys.modules[method.__module__].__doc__ or config.__name__).strip().splitlines()[0]
    lines = [f"{name}: {summary}"]
    lines.append(
        f"  needs a retain set: {'yes' if method.needs_retain else 'no'}; "
        f"projects updates away from the Core Gradient Space: {'yes' if method.uses_projection else 'no'}"
    )
    training = ", ".join(f"{k}={v}" for k, v in config.training_defaults.items()) or "the library's"
    lines.append(f"  recommended training values (used when you leave them unset): {training}")
    growth = f"x{config.step_growth:g} (at most twice)" if config.step_growth > 1 else "no (step_growth=1)"
    lines.append(f"  grows a stalled sample removal's step (--step_growth, unless set): {growth}")
    fields = dataclasses.fields(config)
    lines.append("  hyperparameters (--NAME VALUE on the recipe's command line, NAME: VALUE in YAML,")
    lines.append("  method_kwargs={...} in Python):" if fields else "  method_kwargs={...} in Python): none")
    for f in fields:
        lines.append(
            f"    {f.name} ({getattr(f.type, '__name__', f.type)}, default {f.default}): {f.metadata.get('help', '')}"
        )
    if config.paper is not None:
        paper = config.paper
        lines.append(f"  paper: {paper.title} ({paper.venue} {paper.year}) {paper.url or ''}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    if argv:
        print(describe(argv[0]))
        return
    width = max(len(n) for n in METHODS)
    for name, method in METHODS.items():
        paper = method.config_class.paper
        source = f"{paper.authors.split(' and ')[0].split(',')[0]} et al., {paper.venue} {paper.year}" if paper else ""
        print(f"{name:<{width}}  retain set: {'yes' if method.needs_retain else 'no ':<3}  {source}")
    print("\n`hf-unlearn methods NAME` lists a method's hyperparameters.")
