"""``hf-unlearn``: the command line. ``demo`` runs the main job; ``unlearn`` runs the recipe."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": "hf_unlearn.demo", "unlearn": "hf_unlearn.scripts.unlearn"}
    if not argv or argv[0] not in commands:
        print("usage: hf-unlearn {demo,unlearn} [options]   (hf-unlearn unlearn --help for the recipe's options)")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from importlib import import_module

    import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
