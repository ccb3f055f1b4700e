"""SISA: exact unlearning by sharded, isolated, sliced, aggregated training (Bourtoule et al., 2021).

The training set is split at random into ``num_shards`` disjoint shards, one model each, and every
shard into ``num_slices`` slices. A shard model is trained in stages: stage j trains on slices 0..j
(starting from the checkpoint of stage j−1) and is saved. Predictions aggregate the shard models.
A deletion touches only the shards holding the deleted examples, and of those only the stages from
the first slice that held one: they are retrained from the last checkpoint before it. Every stage
is seeded by (seed, shard, stage), so the result *is* what training that shard from scratch on its
remaining data gives — exact by construction, and tested bit for bit.

Epochs: stage j trains ``recipe.num_train_epochs · 2 / (num_slices + 1)`` epochs over the data seen so
far, so a shard costs one recipe run over its data in total (the first slice's examples are seen more
often than the last one's). Deletion is recorded in ``sisa_config.json`` *before* any retraining, with
the shards still to retrain; a crash leaves them pending and the next ``from_pretrained`` finishes them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from transformers import AutoConfig, default_data_collator

from ..core import fingerprint_examples
from ..core.fingerprint import digest
from ..core.labels import LABEL_KEYS
from ..data.columns import keep_model_columns
from .retrain import TrainingRecipe, _auto_class, train_classifier
from .sisa_files import folder_checksums, stage_problem

logger = logging.getLogger(__name__)
SISA_CONFIG = "sisa_config.json"
FORMAT_VERSION = 1


def _digest(dataset) -> str:
    """A digest of the training set's rows (unkeyed): tells whether ``from_pretrained`` got the same data."""
    return digest(fingerprint_examples(dataset, dataset.column_names, key=None))


def _main_process() -> bool:
    """Rank 0 writes (read from the environment too: the first write comes before the Trainer starts DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _wait_for_everyone() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class SISAEnsemble:
    """``num_shards`` models trained on disjoint shards; delete examples by retraining only their shards.

    Build one with ``SISAEnsemble.train`` or load one with ``SISAEnsemble.from_pretrained``.
    """

    config_file = SISA_CONFIG

    def __init__(self, folder: str | Path, state: dict, train_dataset, *, data_collator=None, processing_class=None):
        self.folder = Path(folder)
        self.state = state
        self.train_dataset = train_dataset
        self.data_collator = data_collator
        self.processing_class = processing_class
        self.recipe = TrainingRecipe(**state["recipe"])
        self.models: list = [None] * state["num_shards"]

    # ------------------------------------------------------------------ layout
    @property
    def num_shards(self) -> int:
        return self.state["num_shards"]

    @property
    def num_slices(self) -> int:
        return self.state["num_slices"]

    @property
    def deleted(self) -> set[int]:
        return set(self.state["deleted"])

    def stage_dir(self, shard: int, stage: int) -> Path:
        return self.folder / f"shard-{shard}" / f"slice-{stage}"

    def shard_of(self, index: int) -> tuple[int, int]:
        """(shard, slice) holding training example ``index``."""
        if getattr(self, "_location", None) is None:  # one dict instead of a scan of every slice per lookup
            self._location = {
                i: (shard, stage)
                for shard, slices in enumerate(self.state["assignment"])
                for stage, members in enumerate(slices)
                for i in members
            }
        return self._location[index]

    def live_indices(self, shard: int, up_to: int) -> list[int]:
        """Training examples of slices 0..``up_to`` of ``shard`` that were not deleted, in slice order."""
        deleted = self.deleted
        slices = self.state["assignment"][shard][: up_to + 1]
        return [i for members in slices for i in members if i not in deleted]

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        config,
        train_dataset,
        recipe: TrainingRecipe,
        *,
        output_dir: str | Path,
        num_shards: int = 5,
        num_slices: int = 3,
        base_model: str | Path | None = None,
        model_class=None,
        data_collator=None,
        processing_class=None,
    ) -> SISAEnsemble:
        """Train every shard, stage by stage, saving a checkpoint after each slice.

        ``config`` defines the shard models (``model_class.from_config``, the Auto class matching
        ``config.architectures`` by default); with ``base_model`` each shard is fine-tuned from that
        pretrained folder or Hub id instead, as the original would have been.
        """
        if num_shards < 1 or num_slices < 1:
            raise ValueError(f"num_shards and num_slices must be at least 1, got {num_shards} and {num_slices}.")
        if len(train_dataset) < num_shards * num_slices:
            raise ValueError(
                f"{len(train_dataset)} training examples cannot fill {num_shards} shards x {num_slices} slices."
            )
        order = np.random.default_rng(recipe.seed).permutation(len(train_dataset))
        assignment = [
            [s.tolist() for s in np.array_split(shard, num_slices)] for shard in np.array_split(order, num_shards)
        ]
        model_class = model_class or _auto_class(config)
        state = {
            "format_version": FORMAT_VERSION,
            "num_shards": num_shards,
            "num_slices": num_slices,
            "recipe": dataclasses.asdict(recipe),
            "epochs_per_stage": recipe.num_train_epochs * 2 / (num_slices + 1),
            "base_model": str(base_model) if base_model is not None else None,
            "model_class": model_class.__name__,
            "model_config": config.to_dict(),
            "train_digest": _digest(train_dataset),
            "num_train_examples": len(train_dataset),
            "assignment": assignment,
            "deleted": [],
            "requests": [],
            "pending": list(range(num_shards)),  # shards whose checkpoints are not all written yet
            "pending_from": [0] * num_shards,
            "training_seconds": 0.0,
        }
        ensemble = cls(output_dir, state, train_dataset, data_collator=data_collator, processing_class=processing_class)
        ensemble._model_class = model_class
        ensemble._config = config
        ensemble.folder.mkdir(parents=True, exist_ok=True)
        if _main_process():
            config.save_pretrained(ensemble.folder)  # the shard models' config, readable before any shard exists
        ensemble._write_state()
        ensemble._finish_pending()
        return ensemble

    def _new_model(self, shard: int):
        torch.manual_seed(self.recipe.seed + 1000 * shard)
        config = copy.deepcopy(self._config)
        if self.state["base_model"]:
            return self._model_class.from_pretrained(self.state["base_model"], config=config)
        build = getattr(self._model_class, "from_config", None)  # Auto classes; a model class is called
        return build(config) if build is not None else self._model_class(config)

    def retrain_shard(self, shard: int, from_slice: int = 0, output_dir: str | Path | None = None):
        """Train ``shard`` from the checkpoint before ``from_slice`` (0: from scratch) on its live data.

        Checkpoints go to ``output_dir`` (this ensemble's folder by default); returns the final model.
        """
        folder = Path(output_dir) if output_dir is not None else self.folder
        from_slice = self.start_slice(shard, from_slice)
        if from_slice == 0:
            model = self._new_model(shard)
        else:
            model = self._model_class.from_pretrained(self.stage_dir(shard, from_slice - 1))
        for stage in range(from_slice, self.num_slices):
            indices = self.live_indices(shard, stage)
            if indices:  # a shard whose every example was deleted keeps its earlier state
                recipe = dataclasses.replace(
                    self.recipe,
                    num_train_epochs=self.state["epochs_per_stage"],
                    seed=self.recipe.seed + 1000 * shard + stage,
                )
                self.state["training_seconds"] += train_classifier(
                    model,
                    self.train_dataset.select(indices),
                    recipe,
                    output_dir=str(folder / "trainer"),
                    data_collator=self.data_collator,
                    processing_class=self.processing_class,
                )
            target = folder / f"shard-{shard}" / f"slice-{stage}"
            if _main_process():  # under accelerate launch every process trains the shard (DDP); one writes
                model.save_pretrained(target)
                if folder == self.folder:  # verified when the ensemble loads (sisa_files.py)
                    self.state.setdefault("checksums", {})[f"shard-{shard}/slice-{stage}"] = folder_checksums(target)
            _wait_for_everyone()
        return model

    def stage_problem(self, shard: int, stage: int) -> str | None:
        """What is wrong with the saved stage ``stage`` of ``shard`` (None: intact)."""
        recorded = self.state.get("checksums", {}).get(f"shard-{shard}/slice-{stage}")
        return stage_problem(self.stage_dir(shard, stage), recorded)

    def start_slice(self, shard: int, from_slice: int) -> int:
        """The slice a retraining of ``shard`` must start from: ``from_slice``, or earlier while the checkpoint
        before it is missing or altered (each stage is seeded, so starting earlier gives the same model)."""
        start = from_slice
        while start > 0 and (problem := self.stage_problem(shard, start - 1)) is not None:
            logger.warning("SISA: the checkpoint of shard %d before slice %d cannot be used (%s); starting earlier",
                           shard, start, problem)
            start -= 1
        return start

    def _verify_final_models(self, repair: bool) -> None:
        """Refuse (or with ``repair``, mark for retraining) shard models that are missing or altered."""
        last = self.num_slices - 1
        broken = {s: p for s in range(self.num_shards)
                  if s not in self.state["pending"] and (p := self.stage_problem(s, last)) is not None}
        if not broken:
            return
        shown = "; ".join(f"shard {s}: {p}" for s, p in broken.items())
        if not (repair and self.train_dataset is not None):
            raise ValueError(
                f"The SISA ensemble in {self.folder} cannot be used: {shown}. Restore the folder from a backup, or "
                "load it with train_dataset=<its training set> and repair=True to retrain those shards from their "
                "last intact checkpoint."
            )
        logger.warning("SISA: retraining broken shard model(s): %s", shown)
        for shard in broken:  # start_slice walks back from the last stage to the last intact checkpoint
            self.state["pending"].append(shard)
            self.state["pending_from"].append(last)

    def _finish_pending(self) -> None:
        """Retrain the shards a request (or the first training) left pending, then clear them."""
        for shard, start in zip(list(self.state["pending"]), list(self.state["pending_from"])):
            logger.info("SISA: training shard %d of %d from slice %d", shard + 1, self.num_shards, start)
            self.models[shard] = self.retrain_shard(shard, start)
            position = self.state["pending"].index(shard)
            del self.state["pending"][position], self.state["pending_from"][position]
            self._write_state()

    # ------------------------------------------------------------------ deletion
    def resolve(self, forget) -> list[int]:
        """Training indices of ``forget`` (a list of indices, or a Dataset matched row by row)."""
        if hasattr(forget, "column_names"):
            columns = list(self.train_dataset.column_names)
            known: dict[int, list[int]] = {}
            for index, fp in enumerate(fingerprint_examples(self.train_dataset, columns, key=None).tolist()):
                known.setdefault(fp, []).append(index)
            missing = [c for c in columns if c not in forget.column_names]
            if missing:
                raise ValueError(
                    f"The forget set lacks the training columns {missing}: rows are matched on all of them."
                )
            wanted = fingerprint_examples(forget.select_columns(columns), columns, key=None).tolist()
            unknown = sum(fp not in known for fp in wanted)
            if unknown:
                raise ValueError(f"{unknown} of {len(wanted)} forget examples are not in the training set.")
            return sorted({i for fp in wanted for i in known[fp]})
        indices = sorted({int(i) for i in forget})
        bad = [i for i in indices if not 0 <= i < self.state["num_train_examples"]]
        if bad:
            raise ValueError(
                f"Indices {bad[:5]} are outside the training set (0..{self.state['num_train_examples'] - 1})."
            )
        return indices

    def unlearn(self, forget) -> dict:
        """Delete ``forget`` exactly: retrain the affected shards from their first affected slice."""
        if self.train_dataset is None:
            raise ValueError("Deleting examples retrains shards on their remaining data: load with train_dataset=.")
        indices = self.resolve(forget)
        if not indices:
            raise ValueError("The forget set is empty: there is nothing to delete.")
        repeated = sorted(self.deleted.intersection(indices))
        if repeated:
            raise ValueError(f"{len(repeated)} examples were already deleted (e.g. index {repeated[0]}).")
        first: dict[int, int] = {}
        for index in indices:
            shard, stage = self.shard_of(index)
            first[shard] = min(stage, first.get(shard, stage))
        first = {shard: self.start_slice(shard, stage) for shard, stage in first.items()}  # intact checkpoints only
        start = time.perf_counter()
        self.state["deleted"] = sorted(self.deleted.union(indices))
        self.state["pending"], self.state["pending_from"] = list(first), [first[s] for s in first]
        self.state["requests"].append({"examples": len(indices), "shards": sorted(first)})
        self._write_state()  # recorded first: a crash leaves the shards pending, never half-deleted
        stages = sum(self.num_slices - s for s in first.values())
        logger.info("SISA: deleting %d examples retrains %d shard(s), %d stage(s)", len(indices), len(first), stages)
        self._finish_pending()
        seconds = time.perf_counter() - start
        self.state["requests"][-1]["seconds"] = seconds
        self._write_state()
        return {
            "deleted": len(indices),
            "shards_retrained": sorted(first),
            "stages_retrained": stages,
            "seconds": seconds,
        }

    # ------------------------------------------------------------------ prediction
    def _final(self, shard: int):
        if self.models[shard] is None:
            self.models[shard] = self._model_class.from_pretrained(self.stage_dir(shard, self.num_slices - 1))
        return self.models[shard]

    @torch.no_grad()
    def shard_probabilities(self, dataset, batch_size: int = 128) -> torch.Tensor:
        """Class probabilities of every shard model, ``(num_shards, len(dataset), num_labels)``."""
        outputs = []
        for shard in range(self.num_shards):
            model = self._final(shard).eval()
            inputs = keep_model_columns(model, dataset)
            collate = self.data_collator or default_data_collator
            probabilities = []
            for batch in DataLoader(inputs, batch_size=batch_size, collate_fn=collate):
                features = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
                probabilities.append(model(**features).logits.float().softmax(-1))
            outputs.append(torch.cat(probabilities))
        return torch.stack(outputs)

    def predict(self, dataset, aggregation: str = "mean", batch_size: int = 128) -> torch.Tensor:
        """Predicted class per example: ``mean`` of shard probabilities, or majority ``vote`` (ties: mean)."""
        probabilities = self.shard_probabilities(dataset, batch_size)
        mean = probabilities.mean(0)
        if aggregation == "mean":
            return mean.argmax(-1)
        if aggregation == "vote":
            votes = torch.nn.functional.one_hot(probabilities.argmax(-1), mean.shape[-1]).sum(0).float()
            return (votes + mean / 2).argmax(-1)  # mean < 1 only breaks ties between equal vote counts
        raise ValueError(f"aggregation must be 'mean' or 'vote', got {aggregation!r}")

    # ------------------------------------------------------------------ saving, loading, pushing
    def push_to_hub(self, repo_id: str, *, include_checkpoints: bool = False, **kwargs) -> str:
        """Upload the shard models (and slice checkpoints if asked) with a card listing the deletions."""
        from .sisa_hub import push_ensemble_to_hub

        return push_ensemble_to_hub(self, repo_id, include_checkpoints=include_checkpoints, **kwargs)

    def _write_state(self) -> None:
        if not _main_process():
            _wait_for_everyone()
            return
        temporary = self.folder / (SISA_CONFIG + ".tmp")
        temporary.write_text(json.dumps(self.state))
        os.replace(temporary, self.folder / SISA_CONFIG)
        _wait_for_everyone()

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, train_dataset=None, *, model_class=None, data_collator=None, processing_class=None,
        repair: bool = False,
    ) -> SISAEnsemble:
        """Load an ensemble. ``train_dataset`` (the very same training set) is needed to delete examples.

        Every shard model is verified against the checksums recorded when it was saved; a missing or altered one
        is refused, or with ``repair=True`` (and ``train_dataset``) retrained from its last intact checkpoint.
        """
        path = Path(folder) / SISA_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no SISA ensemble ({SISA_CONFIG} is missing).")
        state = json.loads(path.read_text())
        if state.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer hf_unlearn (format {state['format_version']}).")
        if train_dataset is not None and _digest(train_dataset) != state["train_digest"]:
            raise ValueError(
                f"train_dataset is not the training set of this ensemble ({len(train_dataset)} rows; it was trained "
                f"on {state['num_train_examples']}, in a fixed order): deletions must name rows of that exact set."
            )
        ensemble = cls(folder, state, train_dataset, data_collator=data_collator, processing_class=processing_class)
        ensemble._config = (model_class.config_class if model_class else AutoConfig).from_pretrained(folder)
        ensemble._model_class = model_class or _auto_class(ensemble._config)
        ensemble._verify_final_models(repair)
        if state["pending"]:
            if train_dataset is None:
                raise ValueError(
                    f"Shards {state['pending']} were left pending by an interrupted deletion: "
                    "pass train_dataset= to finish them."
                )
            logger.warning("SISA: finishing an interrupted deletion (shards %s)", state["pending"])
            ensemble._finish_pending()
        return ensemble
