"""Saving and publishing an unlearning run, as a mixin of ``UnlearningTrainer``.

The model, its Core Gradient Space (with the ledger) and an honest model card travel together; a
push saves first and uploads only what is meant to be public (``hub.UNPUBLISHED_PATTERNS``).
"""

from __future__ import annotations

import logging
import os

from transformers.utils.hub import hf_api

from .hub import UNPUBLISHED_PATTERNS, UnlearningCardData, write_model_card
from .protection import CGS_DIR

logger = logging.getLogger(__name__)


class UnlearningPublishing:
    """Needs the Trainer's ``args``, ``state``, ``model`` and hub helpers, and the trainer's run record
    (``core_gradient_space``, ``outcome``, ``comparison``, ``method``, ``scenario``)."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """The model, its space (with the ledger) and the model card travel together."""
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        if self.core_gradient_space is not None:
            self.core_gradient_space.save_pretrained(os.path.join(output_dir, CGS_DIR))
        write_model_card(self.card_data(), output_dir)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Save first (a push that fails offline loses nothing), then upload only what is meant to be public.

        Left out: ``training_args.bin`` (it can name the forget filter), the retrain cache, checkpoints and
        logs (``hub.UNPUBLISHED_PATTERNS``). The model card names local base models by their folder only.
        """
        self.save_model(_internal_call=True)
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        if not self.is_world_process_zero():
            return None
        model_name = kwargs.pop("model_name", None) or self.hub_model_id.split("/")[-1]
        self.create_model_card(model_name=model_name, tags=kwargs.get("tags"))
        self._finish_current_push()
        return hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=self.args.output_dir,
            commit_message=commit_message,
            token=token,
            run_as_future=not blocking,
            ignore_patterns=list(UNPUBLISHED_PATTERNS),
            revision=revision if revision is not None else self.args.hub_revision,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Mid-run checkpoints are not published: a half-finished request is not a model anyone should pull."""
        logger.info("Not pushing checkpoint %s: the unlearned model is pushed once the run ends.", checkpoint_folder)

    def create_model_card(self, model_name: str | None = None, tags=None, **kwargs) -> None:
        """An honest card: what was forgotten, how, and (when measured) how close to retraining."""
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
            base_model=getattr(config, "_name_or_path", "") or type(self.model).__name__,
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
            projection=f"gamma={args.gamma}, energy `{args.gamma_energy}`" if self.method.uses_projection else None,
            ledger=list(space.ledger) if self.protection is not None and space is not None else [],
            seconds=self.unlearning_seconds,
            comparison=self.comparison,
            comparison_reference=self.comparison_reference,
            tags=list(tags or []) if not isinstance(tags, str) else [tags],
            unlearned=self.outcome.unlearned if self.outcome else None,
            outcome=self.outcome.reason if self.outcome else "",
            backtracks=self.outcome.backtracks if self.outcome else 0,
            warnings=list(self.outcome.warnings) if self.outcome else [],
        )

