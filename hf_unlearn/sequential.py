"""A model's life of deletion requests: serve them one after another, each on the model the last one left.

Every request is a full :class:`UnlearningTrainer` run on the previous request's saved model (its Core
Gradient Space and ledger travel in that folder), with the retain set shrinking by everything removed
so far. A request counts as served only once its folder ``request-NNNN/`` exists: the run works in
``request-NNNN.partial/`` (checkpoints included) and that folder is renamed only after the model, space,
card and ``request.json`` are written. So a crash between requests repeats nothing, and a crash during
one resumes it from its newest checkpoint (or restarts it) without ever recording it twice.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from .core import LedgerError, UnsupportedSetupError
from .core.fingerprint import digest
from .core.layers import has_adapters
from .data.causal_lm import is_causal_lm
from .data.columns import label_array
from .training.arguments import UnlearningArguments
from .training.trainer import UnlearningTrainer
from .utils.files import write_json_atomically

logger = logging.getLogger(__name__)

REQUEST_FILE = "request.json"
SUMMARY_FILE = "requests.json"

Evaluate = Callable[[nn.Module, list[int]], dict]


def request_folder(output_dir: str | os.PathLike, number: int) -> Path:
    return Path(output_dir) / f"request-{number:04d}"


def _digest(indices: Sequence[int]) -> str:
    return digest(sorted(indices), length=16)


class SequentialUnlearning:
    """Serve deletion requests (lists of training-set row numbers) one after another on one model.

    One process only (several would each rename the same folders): run it without ``accelerate launch``.

    Args:
        model: the trained model before any request; its weights are left untouched (request 1 works on a
            copy; later requests measure it, as the baseline, on the run's device).
        args: the arguments every request runs with; ``args.output_dir`` holds one folder per request.
        train_dataset: the full training set the row numbers refer to.
        eval_dataset: held-out data for the stop rules and the guard.
        core_gradient_space: the space for request 1 (later requests use the one saved with the model).
        evaluate: ``evaluate(model, removed_rows) -> dict``, called after each request with every row
            removed so far; what it returns is stored with the request (e.g. a comparison with a model
            retrained without those rows).
    """

    def __init__(
        self,
        model: nn.Module,
        args: UnlearningArguments,
        train_dataset,
        *,
        eval_dataset=None,
        core_gradient_space=None,
        processing_class=None,
        data_collator=None,
        evaluate: Evaluate | None = None,
    ):
        if args.world_size > 1:
            raise UnsupportedSetupError(
                f"Sequential requests run in one process (this is one of {args.world_size}): every process would "
                "rename the same request folders. Launch it with python, not accelerate launch / torchrun."
            )
        if has_adapters(model):
            raise TypeError(
                "Sequential requests reload each request's model with from_pretrained, which a PEFT model does not "
                "support here: merge the adapter first (model.merge_and_unload()), then serve the requests."
            )
        if is_causal_lm(model):
            raise ValueError(
                "Sequential requests are built for classifiers (held-out classes, label checks); serve a causal LM's "
                "requests with one UnlearningTrainer run each, saving the model and its space in between."
            )
        self.model = model
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.core_gradient_space = core_gradient_space
        self.processing_class = processing_class
        self.data_collator = data_collator
        self.evaluate = evaluate
        self.output_dir = Path(args.output_dir)

    # ------------------------------------------------------------------ what is already served
    def served(self) -> list[dict]:
        """The records of the requests served so far, in order (read from their folders)."""
        records, number = [], 1
        while (request_folder(self.output_dir, number) / REQUEST_FILE).is_file():
            records.append(json.loads((request_folder(self.output_dir, number) / REQUEST_FILE).read_text()))
            number += 1
        return records

    def removed_rows(self, records: list[dict] | None = None) -> list[int]:
        """Every training row a served request really removed (requests that did not unlearn are left out)."""
        records = self.served() if records is None else records
        return sorted(row for record in records if record["unlearned"] for row in record["rows"])

    # ------------------------------------------------------------------ serving
    def serve(self, requests: Sequence[Sequence[int]]) -> list[dict]:
        """Serve every request not served yet and return all records (``request.json`` of each folder).

        Checked before any request runs: row numbers in range, no request empty, no row asked for twice,
        and the requests already served must be the first ones given (a restart passes the same list; a
        different list is refused rather than silently mixed). Each request's own checks (the space's
        ledger and key, the model's fingerprint) run, as always, before its weights change.
        """
        wanted = [self._rows(number, rows) for number, rows in enumerate(requests, start=1)]
        records = self.served()
        for number in range(1, len(records) + 1):  # a crash right after a rename leaves checkpoints behind
            for checkpoint in request_folder(self.output_dir, number).glob("checkpoint-*"):
                shutil.rmtree(checkpoint)
        for record in records[: len(wanted)]:
            if record["digest"] != _digest(wanted[record["request"] - 1]):
                raise ValueError(
                    f"Request {record['request']} in {self.output_dir} was served with other rows than the request "
                    "given at that position now. Pass the served requests first, in order, or use a new output_dir."
                )
        self._refuse_repeats(wanted, records)
        for number in range(len(records) + 1, len(wanted) + 1):
            records.append(self._serve_one(number, len(wanted), wanted[number - 1], records))
        write_json_atomically(self.output_dir / SUMMARY_FILE, records)
        return records

    def _rows(self, number: int, rows: Sequence[int]) -> list[int]:
        rows = [int(r) for r in rows]
        if not rows:
            raise ValueError(f"Request {number} is empty: there is nothing to remove.")
        if min(rows) < 0 or max(rows) >= len(self.train_dataset):
            raise IndexError(
                f"Request {number} names rows outside the training set (0..{len(self.train_dataset) - 1}): "
                f"{[r for r in rows if not 0 <= r < len(self.train_dataset)][:5]}"
            )
        if len(set(rows)) != len(rows):
            raise ValueError(f"Request {number} names some rows more than once.")
        return sorted(rows)

    def _refuse_repeats(self, wanted: list[list[int]], records: list[dict]) -> None:
        owner = {row: record["request"] for record in records if record["unlearned"] for row in record["rows"]}
        for number in range(len(records) + 1, len(wanted) + 1):
            repeated = [row for row in wanted[number - 1] if row in owner]
            if repeated:
                raise LedgerError(
                    f"Request {number} asks to remove {len(repeated)} row(s) already removed by request "
                    f"{owner[repeated[0]]} (e.g. row {repeated[0]}). A removed example cannot be removed again; "
                    "nothing was changed."
                )
            owner.update(dict.fromkeys(wanted[number - 1], number))

    def _model_for(self, number: int) -> nn.Module:
        if number == 1:
            return copy.deepcopy(self.model)
        previous = request_folder(self.output_dir, number - 1)
        return type(self.model).from_pretrained(previous)  # its space and ledger come with it

    def _serve_one(self, number: int, total: int, rows: list[int], records: list[dict]) -> dict:
        final = request_folder(self.output_dir, number)
        staging = final.with_name(f"{final.name}.partial")
        resume = _newest_checkpoint(staging)
        if staging.exists() and resume is None:
            shutil.rmtree(staging)  # it died before any checkpoint: start the request over
        removed, asked = set(self.removed_rows(records)), set(rows)
        retain_rows = [i for i in range(len(self.train_dataset)) if i not in removed and i not in asked]
        logger.info(
            "Request %d/%d: removing %d example(s); %d removed before, %d kept%s",
            number, total, len(rows), len(removed), len(retain_rows), f" (resuming {resume.name})" if resume else "",
        )
        args = copy.deepcopy(self.args)
        args.output_dir = str(staging)
        start = time.perf_counter()
        trainer = UnlearningTrainer(
            self._model_for(number),
            args,
            forget_dataset=self.train_dataset.select(rows),
            retain_dataset=self.train_dataset.select(retain_rows),
            eval_dataset=self._known_classes(self.eval_dataset, rows + retain_rows),
            original_dataset=self.train_dataset,
            core_gradient_space=self.core_gradient_space if number == 1 else None,
            processing_class=self.processing_class,
            data_collator=self.data_collator,
            baseline_model=self.model if number > 1 else None,  # losses may not add up over requests
        )
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        trainer.save_model()
        outcome = trainer.outcome
        record = {
            "request": number,
            "rows": rows,
            "digest": _digest(rows),
            "num_examples": len(rows),
            "method": args.method,
            "unlearned": bool(outcome.unlearned),
            "outcome": outcome.reason,
            "incomplete": bool(outcome.incomplete),
            "utility_warnings": list(outcome.warnings),
            "seconds": round(time.perf_counter() - start, 3),
            "resumed_from": resume.name if resume else None,
            "removed_so_far": len(removed) + (len(rows) if outcome.unlearned else 0),
        }
        if self.evaluate is not None:
            removed_after = sorted(removed | set(rows)) if outcome.unlearned else sorted(removed)
            record["metrics"] = self.evaluate(trainer.model, removed_after)
        if not outcome.unlearned:
            logger.warning("Request %d was NOT carried out (%s): its rows stay in the model", number, outcome.reason)
        write_json_atomically(staging / REQUEST_FILE, record)
        staging.replace(final)  # the one step that makes the request served
        for checkpoint in final.glob("checkpoint-*"):  # after the rename: a crash here cannot block a restart
            shutil.rmtree(checkpoint)
        write_json_atomically(self.output_dir / SUMMARY_FILE, [*records, record])
        return record


    def _known_classes(self, dataset, rows: list[int]):
        """``dataset`` without the classes earlier requests removed whole: the model rightly fails them now, and
        the guard would read that as damage against the model before the first request."""
        if dataset is None:
            return None
        known = set(label_array(self.train_dataset.select(rows)).tolist())
        labels = label_array(dataset).tolist()
        keep = [i for i, y in enumerate(labels) if y in known]
        return dataset if len(keep) == len(labels) else dataset.select(keep)


def _newest_checkpoint(folder: Path) -> Path | None:
    from .training.checkpoints import resolve_resume

    if not any(folder.glob("checkpoint-*")):
        return None
    try:
        return Path(resolve_resume(True, str(folder)))
    except FileNotFoundError:
        return None
