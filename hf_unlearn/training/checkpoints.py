"""What an unlearning checkpoint adds to the Trainer's, so a killed run resumes exactly where it was.

Beside the weights, optimizer and space, a checkpoint holds the control's state (the original's
utility, the last good states the guard rolls back to, the backtracks so far) and, written last,
a marker naming the request it belongs to. The marker is how a resume tells a complete checkpoint
from one cut off mid-write, and refuses a checkpoint made for another forget set.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import TrainOutput

from ..core import fingerprint_examples
from ..core.fingerprint import digest

logger = logging.getLogger(__name__)
CONTROL_STATE = "unlearning_control.pt"
REQUEST_MARKER = "unlearning_request.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
AUTO_RESUME = ("true", "True", "last")


def request_digest(forget_dataset) -> str:
    """A digest of the request's rows (order-free), to match a checkpoint with its forget set."""
    columns = list(forget_dataset.column_names)
    fingerprints = fingerprint_examples(forget_dataset, columns).sort().values
    return digest(",".join(columns), fingerprints, length=32)


def stopped_at(control_state: dict | None) -> bool:
    """Whether the checkpoint holding ``control_state`` is where the stop rule (or the guard) ended the run."""
    return bool(control_state) and control_state["outcome"].get("stopped_by") in ("rule", "guard")


def write_checkpoint_extras(folder: str, control_state: dict, digest: str, method: str, step: int) -> None:
    torch.save(control_state, os.path.join(folder, CONTROL_STATE))
    marker = {"request": digest, "method": method, "global_step": step,
              "stopped_by": control_state["outcome"]["stopped_by"] if stopped_at(control_state) else None}
    partial = Path(folder, f".{REQUEST_MARKER}.partial")
    partial.write_text(json.dumps(marker))
    partial.replace(Path(folder, REQUEST_MARKER))  # last: its presence means the checkpoint is complete


def _is_complete(folder: Path) -> bool:
    return (folder / REQUEST_MARKER).is_file() and (folder / "trainer_state.json").is_file()


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: ``True``/"last" means the newest *complete* one in ``output_dir``."""
    if value in (None, False, ""):
        return None
    if value is True or value in AUTO_RESUME:
        found = sorted(
            (int(m.group(1)), p)
            for p in Path(output_dir).glob("checkpoint-*")
            if p.is_dir() and (m := _CHECKPOINT.match(p.name))
        )
        for _step, path in reversed(found):
            if _is_complete(path):
                return str(path)
            logger.warning("Skipping %s: the checkpoint is incomplete (the run stopped while writing it)", path)
        raise FileNotFoundError(f"No complete unlearning checkpoint in {output_dir} to resume from.")
    path = Path(value)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a folder.")
    if not _is_complete(path):
        raise ValueError(
            f"{path} is not a complete unlearning checkpoint (no {REQUEST_MARKER}: the run stopped while writing "
            "it). Resume from the previous one, or pass resume_from_checkpoint=True to take the newest complete one."
        )
    return str(path)


def check_resume(folder: str, digest: str, method: str) -> dict | None:
    """Refuse a checkpoint made for another request or method; the control state to restore, if saved."""
    marker_path = Path(folder, REQUEST_MARKER)
    if not marker_path.is_file():
        return None  # a checkpoint from before markers existed: nothing to compare
    marker = json.loads(marker_path.read_text())
    if marker.get("request") != digest:
        raise ValueError(
            f"{folder} was saved while unlearning a different forget set. Resuming it with this one would record the "
            "wrong examples as forgotten: pass the forget set the run started with, or start a new run."
        )
    if marker.get("method") != method:
        raise ValueError(f"{folder} was saved by method {marker.get('method')!r}, not {method!r}.")
    state_path = Path(folder, CONTROL_STATE)
    return torch.load(state_path, weights_only=True) if state_path.is_file() else None


def finish_at_stop(trainer, checkpoint: str) -> TrainOutput:
    """End a run resumed from the checkpoint where its stop rule (or guard) fired, as the uninterrupted run ended.

    That checkpoint's weights are the state the rule chose (a return to the previous check included) and its
    control state records the decision; resuming the Trainer's loop would take a step past the stop and move on
    from the chosen weights. So the weights are loaded, the saved decisions restored and the run's end settled,
    without a step.
    """
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    control = trainer.control_callback
    control.on_train_begin(trainer.args, trainer.state, trainer.control, model=trainer.model)  # restores its state
    control.on_train_end(trainer.args, trainer.state, trainer.control)
    logger.info("%s is where the run stopped (%s): finished there without another step", checkpoint,
                control.outcome.reason)
    return TrainOutput(trainer.state.global_step, 0.0, {})
