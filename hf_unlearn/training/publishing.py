"""Saving and publishing an unlearning run, as a mixin of ``UnlearningTrainer``.

The model, its Core Gradient Space (with the ledger) and an honest model card travel together; a
push saves first and uploads only what is meant to be public (``cards.model_card.UNPUBLISHED_PATTERNS``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub.utils import filter_repo_objects
from transformers.utils.hub import hf_api

from ..cards.model_card import UNPUBLISHED_PATTERNS, UnlearningCardData, write_model_card
from ..core.layers import is_peft_model
from ..protection import CGS_DIR
from .space_history import check_space_push, reaching_the_hub

logger = logging.getLogger(__name__)


def _adapter_description(model) -> str:
    """The active LoRA adapter in a few words, for the card."""
    config = model.peft_config.get(getattr(model, "active_adapter", "default")) if is_peft_model(model) else None
    if config is None or not hasattr(config, "r"):
        return ""
    targets = config.target_modules
    targets = ", ".join(sorted(targets)) if isinstance(targets, (set, list, tuple)) else str(targets)
    return f"r={config.r}, alpha {config.lora_alpha}, on {targets}"


def _base_model_name(model, config) -> str:
    """What the model was made from: an adapter's base checkpoint, else the config's source."""
    if is_peft_model(model):
        adapter = next(iter(model.peft_config.values()), None)
        if adapter is not None and getattr(adapter, "base_model_name_or_path", None):
            return str(adapter.base_model_name_or_path)
    return getattr(config, "_name_or_path", "") or type(model).__name__


class UnlearningPublishing:
    """Needs the Trainer's ``args``, ``state``, ``model`` and hub helpers, and the trainer's run record
    (``core_gradient_space``, ``outcome``, ``comparison``, ``method``, ``scenario``)."""

    # the training data's Hub ids, for the card's ``datasets`` metadata (local folders are left out when rendering);
    # set by the recipe from --dataset_name, or by ``push_to_hub(dataset_tags=...)`` / ``create_model_card``
    card_datasets: tuple[str, ...] = ()

    def _projection_summary(self) -> str:
        """How updates were projected, as the card states it (the class-removal exception included)."""
        space = self.core_gradient_space  # its threshold is the run's: the space's own unless the run set one
        gamma, energy = (space.gamma, space.energy) if space is not None else (self.args.gamma, self.args.gamma_energy)
        text = f"gamma={gamma}, energy `{energy}`"
        projection = self.protection.projection if self.protection is not None else None
        for layer, rows in (projection.free_rows.items() if projection is not None else ()):
            name, _, copy = layer.partition("#modules_to_save.")
            where = f"`{name}` (its PEFT copy)" if copy else f"`{layer}`"
            text += f"; the removed classes' output rows {rows.tolist()} of {where} were left unprojected"
        rows = self.protection.embedding_rows if self.protection is not None else None
        if rows is not None:
            text += f"; {rows.describe()} (no kept input reads them)"
        unprojected = self._unprojected_parameters(projection)
        if unprojected:  # train_unprotected, or biases and norms left trainable: they move outside the projection
            shown = ", ".join(f"`{n}`" for n in unprojected[:4]) + (" ..." if len(unprojected) > 4 else "")
            text += (f"; {len(unprojected)} trained parameter tensor(s) outside the space moved without projection "
                     f"({shown}): their updates are not kept off the retained inputs")
        return text

    def _unprojected_parameters(self, projection) -> list[str]:
        """Trainable parameters whose updates no projection constrains (a LoRA B is safe once its A is projected)."""
        if projection is None:
            return []
        safe = {id(w) for w in projection.weights.values()}
        peft = self.protection.peft if self.protection is not None else None
        safe |= {id(b) for b in (peft.free if peft is not None else [])}
        rows = self.protection.embedding_rows if self.protection is not None else None
        safe |= {id(rows.weight)} if rows is not None else set()
        return [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in safe]

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """As the Trainer saves, except under DeepSpeed when no step was taken (a request that was not carried
        out): the engine never started, the weights are whole, and the Trainer's DeepSpeed path would ask the
        missing engine for a checkpoint."""
        if self.is_deepspeed_enabled and getattr(self, "deepspeed", None) is None:
            if self.args.should_save:
                self._save(output_dir or self.args.output_dir)
            return
        super().save_model(output_dir, _internal_call)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """The model, its space (with the ledger) and the model card travel together."""
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        if self.core_gradient_space is not None:
            self._save_space(os.path.join(output_dir, CGS_DIR), checkpoint=Path(output_dir).name.startswith(
                "checkpoint-"))
        write_model_card(self.card_data(), output_dir)

    def _save_space(self, target: str, checkpoint: bool) -> None:
        """Write the space; a checkpoint whose space has not changed since the run's previous checkpoint gets
        hard links to that one's files instead of a copy (a space can outweigh its model many times over, and a
        run writes a checkpoint every few steps). Saves replace files through a rename, so a later save of either
        folder never writes through a link into the other."""
        space = self.core_gradient_space
        state = space_state(space)
        previous = getattr(self, "_checkpoint_space", None)
        if checkpoint and previous is not None and previous[0] == state and link_folder(previous[1], target):
            return
        space.save_pretrained(target)
        if checkpoint:
            self._checkpoint_space = (state, target)

    def stage_for_hub(self, folder: str | os.PathLike, *, save: bool = True) -> list[str]:
        """Write exactly what ``push_to_hub`` uploads into ``folder`` and return its files (a dry run).

        Saves first. Left out: ``training_args.bin`` (it can name the forget filter), the retrain cache,
        checkpoints and logs (``cards.model_card.UNPUBLISHED_PATTERNS``), and the Core Gradient Space unless
        ``push_core_gradient_space`` (then in ``push_core_gradient_space_dtype``, float32 by default:
        half the size, and the projectors are computed in float32 anyway). The model card names local
        base models by their folder only. ``save=False`` stages the output folder as it is (``push_to_hub``
        has just saved it and written the card under the Hub name).
        """
        if save:
            self.save_model(_internal_call=True)
        source, target = Path(self.args.output_dir).resolve(), Path(folder).resolve()
        if target == source or source in target.parents:
            raise ValueError(f"Stage the upload outside the output folder {source}, not in {target}.")
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"{target} is not empty: the staged upload must contain only what would be pushed.")
        if not self.is_world_process_zero():
            return []
        files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        # the same filter upload_folder applies to ignore_patterns; the space is added below only when asked
        for relative in filter_repo_objects(files, ignore_patterns=[*UNPUBLISHED_PATTERNS, f"{CGS_DIR}/*"]):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, target / relative)
        if self.args.push_core_gradient_space:
            if self.core_gradient_space is None:
                raise ValueError("push_core_gradient_space=True, but this run used no Core Gradient Space.")
            dtype = getattr(torch, self.args.push_core_gradient_space_dtype)
            self.core_gradient_space.save_pretrained(target / CGS_DIR, gram_dtype=dtype)
        target.mkdir(parents=True, exist_ok=True)
        return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Save first (a push that fails offline loses nothing), then upload what ``stage_for_hub`` stages."""
        self.save_model(_internal_call=True)
        with reaching_the_hub(f"push {self.args.output_dir}", saved=self.args.output_dir):
            return self._upload(commit_message, token, revision, private, **kwargs)

    def _upload(self, commit_message, token, revision, private, **kwargs):
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        if not self.is_world_process_zero():
            return None
        model_name = kwargs.pop("model_name", None) or self.hub_model_id.split("/")[-1]
        self.create_model_card(model_name=model_name, tags=kwargs.get("tags"), dataset_tags=kwargs.get("dataset_tags"))
        self._finish_current_push()
        if self.args.push_core_gradient_space and self.core_gradient_space is not None:  # see space_history.py
            check_space_push(self.core_gradient_space, hf_api(), self.hub_model_id, token=token,
                             acknowledged=self.args.acknowledge_space_history)
        with tempfile.TemporaryDirectory(prefix="hf_unlearn_push_") as staging:
            files = self.stage_for_hub(staging, save=False)
            logger.info("Pushing %d files to %s: %s", len(files), self.hub_model_id, ", ".join(files))
            return hf_api().upload_folder(
                repo_id=self.hub_model_id,
                folder_path=staging,
                commit_message=commit_message,
                token=token,
                run_as_future=False,  # the staging folder is removed when this returns
                revision=revision if revision is not None else self.args.hub_revision,
            )

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The Trainer's, with a Hub that cannot be reached named plainly (it runs at construction with push_to_hub)."""
        with reaching_the_hub(f"create the repo {self.args.hub_model_id or ''}".rstrip()):
            super().init_hf_repo(token=token, private=private)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Mid-run checkpoints are not published: a half-finished request is not a model anyone should pull."""
        logger.info("Not pushing checkpoint %s: the unlearned model is pushed once the run ends.", checkpoint_folder)

    def create_model_card(self, model_name: str | None = None, tags=None, dataset_tags=None, **kwargs) -> None:
        """An honest card: what was forgotten, how, and (when measured) how close to retraining. ``dataset_tags``
        (as for the Trainer's card): the training data's Hub ids, kept for every later card of this run."""
        if dataset_tags:
            self.card_datasets = (dataset_tags,) if isinstance(dataset_tags, str) else tuple(dataset_tags)
        if self.is_world_process_zero():
            write_model_card(self.card_data(model_name, tags), self.args.output_dir)

    def card_data(self, model_name: str | None = None, tags=None) -> UnlearningCardData:
        """What this run did, as values for the model card."""
        args = self.args
        config = getattr(self.model, "config", None)
        paper = args.method_config.paper
        space = self.core_gradient_space
        return UnlearningCardData(
            model_name=model_name or os.path.basename(os.path.normpath(args.output_dir)),
            base_model=_base_model_name(self.model, config),
            merged_adapter_base=getattr(self.model, "merged_adapter_base", ""),
            method=args.method,
            scenario=self.scenario,
            forget_count=len(self.forget_dataset),
            optim=getattr(args.optim, "value", args.optim),
            learning_rate=args.learning_rate,
            epochs=args.num_train_epochs,
            stop_rule=args.stop_rule,
            stopped_epoch=self.state.epoch,
            method_config=args.method_config.to_dict(),
            paper_title=paper.title if paper else None,
            paper_url=paper.url if paper else None,
            paper_bibtex=paper.bibtex if paper else None,
            projection=self._projection_summary() if self.method.uses_projection else None,
            ledger=list(space.ledger) if self.protection is not None and space is not None else [],
            seconds=self.unlearning_seconds,
            comparison=self.comparison,
            comparison_reference=self.comparison_reference,
            tags=list(tags or []) if not isinstance(tags, str) else [tags],
            datasets=list(self.card_datasets),
            unlearned=self.outcome.unlearned if self.outcome else None,
            outcome=self.outcome.reason if self.outcome else "",
            backtracks=self.outcome.backtracks if self.outcome else 0,
            growths=self.outcome.growths if self.outcome else 0,
            warnings=list(self.outcome.warnings) if self.outcome else [],
            adapter=is_peft_model(self.model),
            adapter_description=_adapter_description(self.model),
            incomplete=self.outcome.incomplete if self.outcome else "",
            space_published=bool(args.push_core_gradient_space and space is not None),
            measured=self._measured_summary(),
        )

    def _measured_summary(self) -> str:
        """The check samples' accuracies at the start and the end (for a causal LM: of the target tokens)."""
        if self.outcome is None or not self.outcome.initial:
            return ""
        names = {"forget_accuracy": "forget", "retain_accuracy": "retain sample", "validation_accuracy": "validation",
                 "forget_likelihood": "forget likelihood", "validation_likelihood": "validation likelihood"}
        start, end = self.outcome.initial, self.outcome.final or self.outcome.initial
        parts = [f"{label} {start[key]:.1f} → {end.get(key, float('nan')):.1f} %" for key, label in names.items()
                 if key in start]
        unit = ("next-token accuracy on the texts' target tokens (the answers, not the prompts; likelihood = "
                "100·exp(−mean token loss))"
                if getattr(self, "causal_lm", False) else "accuracy")
        confidence = [f"{label} {start[key]:.3f} → {end.get(key, float('nan')):.3f}"
                      for key, label in (("forget_probability", "forget"), ("validation_probability", "validation"))
                      if key in start and not getattr(self, "causal_lm", False)]
        extra = f"; mean true-label probability: {', '.join(confidence)}" if confidence else ""
        near = {k: start[f"validation_{k}_neighbours"] for k in ("accuracy", "probability")
                if f"validation_{k}_neighbours" in start}
        if near and any(v != start.get(f"validation_{k}") for k, v in near.items()):
            accuracy, probability = near.get("accuracy", float("nan")), near.get("probability", float("nan"))
            extra += ("; the stop rule's target, read on the validation examples nearest the forget set: accuracy "
                      f"{accuracy:.1f} %, probability {probability:.3f}")
        return f"{unit}: " + ", ".join(parts) + extra


def space_state(space) -> tuple:
    """What a saved space's content depends on: its settings, ledger and every Gram tensor's identity and in-place
    version (``subtract`` and a request change one of these)."""
    grams = tuple(
        (name, id(g), getattr(g, "_version", None) if isinstance(g, torch.Tensor) else id(g.values))
        for name, g in space.grams.items()
    )
    return (id(space), space.num_examples, space.gamma, space.energy, space.model_fingerprint, len(space.ledger),
            grams)


def link_folder(source: str, target: str) -> bool:
    """Hard-link every file of ``source`` into ``target`` (made anew); False when linking is not possible here."""
    if not os.path.isdir(source):
        return False  # rotated away by save_total_limit
    staged = f"{target}.partial"
    shutil.rmtree(staged, ignore_errors=True)
    os.makedirs(staged)
    try:
        for name in os.listdir(source):
            os.link(os.path.join(source, name), os.path.join(staged, name))
    except OSError:  # another filesystem, or no hard links there: the caller writes a copy
        shutil.rmtree(staged, ignore_errors=True)
        return False
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staged, target)
    return True

