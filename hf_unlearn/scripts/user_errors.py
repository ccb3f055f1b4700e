"""Known user errors end a command-line run with one line and exit status 2, not a traceback.

A refusal the library raises on purpose (a bad flag, a missing folder, a request the ledger cannot accept, a setup
it does not run) already says what is wrong and how to fix it; a traceback around it, printed once per process
under ``accelerate launch``, buries that line. Errors raised anywhere else are bugs or environment problems and keep
their traceback. ``HF_UNLEARN_TRACEBACK=1`` shows the traceback for every error.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import UnsupportedSetupError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, UnsupportedSetupError)


def raised_by_the_library(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in hf_unlearn (a deliberate refusal of ours)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


def is_main_process() -> bool:
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


def run_reporting_user_errors(command: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> Any:
    """Run ``command(argv)``; a known user error prints ``error: ...`` once (main process) and exits with 2."""
    try:
        return command(argv)
    except USER_ERRORS as error:
        if os.environ.get("HF_UNLEARN_TRACEBACK") == "1" or not raised_by_the_library(error):
            raise
        if is_main_process():
            print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_known_flags(parser, argv: list[str]) -> tuple:
    """``parser.parse_args_into_dataclasses(argv)`` (an ``HfArgumentParser``), refusing a flag none of its
    dataclasses has in one line that names the closest options: ``transformers`` raises that error itself, from
    outside the library, so it would otherwise end the run in a traceback."""
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        flags = [t for t in remaining if t.startswith("-")] or remaining
        options = sorted({"--" + o[2:].replace("-", "_") for o in parser._option_string_actions if o.startswith("--")})
        hints = []
        for flag in flags:
            close = difflib.get_close_matches(flag.split("=", 1)[0], options, n=3, cutoff=0.8)
            if close:
                hints.append(f"{flag}: did you mean {' or '.join(close)}?")
        raise ValueError(
            f"unknown option{'s' if len(flags) > 1 else ''} {' '.join(flags)}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + "; --help lists every option"
        )
    return tuple(parsed)
