"""``hf-unlearn``: the command line: ``demo`` (the main job), ``unlearn`` (the recipe), ``methods``, ``cgs``,
``audit``."""

from __future__ import annotations

import sys

COMMANDS = {
    "demo": "hf_unlearn.scripts.demo",
    "unlearn": "hf_unlearn.scripts.unlearn",
    "methods": "hf_unlearn.scripts.methods",
    "cgs": "hf_unlearn.scripts.cgs",
    "audit": "hf_unlearn.scripts.audit",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        from . import __version__

        print(f"hf_unlearn {__version__}")
        return
    if not argv or argv[0] not in COMMANDS:
        print(
            "usage: hf-unlearn {demo,unlearn,methods,cgs,audit} [options]\n"
            "  demo      train a small CNN on digits, unlearn with PGU, compare with retraining\n"
            "  unlearn   the recipe (hf-unlearn unlearn --method NAME --help for that run's options)\n"
            "  methods   the registered methods; `hf-unlearn methods NAME` for one method's hyperparameters\n"
            "  cgs       build | info | push a model's Core Gradient Space (once, right after training)\n"
            "  audit     many unlearned vs many retrained digits models, scored per forget example"
        )
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from importlib import import_module

    from .scripts.user_errors import run_reporting_user_errors

    run_reporting_user_errors(import_module(COMMANDS[argv[0]]).main, argv[1:])


if __name__ == "__main__":
    main()
