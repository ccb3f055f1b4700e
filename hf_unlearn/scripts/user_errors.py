"""Known user errors end a command-line run with one line and exit status 2, not a traceback.

A refusal the library raises on purpose (a bad flag, a missing folder, a request the ledger cannot accept, a setup
it does not run) already says what is wrong and how to fix it; a traceback around it, printed once per process
under ``accelerate launch``, buries that line. Errors raised anywhere else are bugs or environment problems and keep
their traceback. ``HF_UNLEARN_TRACEBACK=1`` shows the traceback for every error.
"""

from __future__ import annotations

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
