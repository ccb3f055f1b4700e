"""PGU's protection in one place: the space built or loaded, the request subtracted, updates projected.

The order matters and is kept here: the space is checked against the model and the request against
the space's ledger *before* any weight moves; the forget set's Gram matrices are collected with the
model that built the space (so retain-by-subtraction is exact); only then are projectors made. The
trainer calls ``prepare`` once and ``snapshot``/``project`` around every optimizer step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..core import CGSMismatchError, CoreGradientSpace, collect_gram_matrices, fingerprint_examples, model_fingerprint
from ..core.carried_ledger import CarriedLedger
from ..core.energy import DEFAULT_ENERGY, DEFAULT_GAMMA
from ..core.layers import find_protectable_layers, is_peft_model
from ..core.space_io import CONFIG_NAME
from ..utils.heap import release_freed_memory
from ..utils.zero3 import whole_parameters
from .embedding_rows import FreeEmbeddingRows, free_embedding_rows
from .freezing import freeze_parameters, freeze_peft_parameters
from .gradients import ProjectedGradients
from .lora_aim import aim_fresh_adapters
from .membership import forget_fingerprints
from .output_rows import forgotten_output_rows, mean_input
from .peft import PeftTargets, base_model_layers, peft_targets, saved_copies
from .updates import ProjectedUpdates

logger = logging.getLogger(__name__)
CGS_DIR = "core_gradient_space"


class RunResult(Protocol):
    """What ``finish`` reads of a run's outcome (``control.state.RunOutcome``)."""

    unlearned: bool
    incomplete: str


@dataclass
class SpaceSettings:
    """How the space is built and thresholded (from ``UnlearningArguments``).

    ``gamma`` and ``energy`` left ``None`` keep the space's own threshold (a space built here gets the library's
    ``DEFAULT_GAMMA`` and ``DEFAULT_ENERGY``); set, they replace it for this run and are saved with the space.
    """

    gamma: float | None = None
    energy: str | None = None
    protect_layers: list[str] | None = None
    exclude_layers: list[str] | None = None
    batch_size: int = 128
    show_progress: bool = True
    lora_aim_at_forget: bool = True  # see lora_aim.py
    page_directory: str | None = None  # where the Grams are written while the weights move (None: kept in memory)

    @classmethod
    def from_args(cls, args) -> SpaceSettings:
        return cls(
            gamma=args.gamma,
            energy=args.gamma_energy,
            protect_layers=args.protect_layers,
            exclude_layers=args.exclude_layers,
            batch_size=args.cgs_batch_size,
            show_progress=not args.disable_tqdm and args.process_index == 0,
            lora_aim_at_forget=args.lora_aim_at_forget,
            page_directory=args.output_dir,
        )


def space_saved_with(model: nn.Module) -> tuple[CoreGradientSpace, str] | None:
    """The space saved in the folder ``model`` was loaded from, checked against it, with that folder.

    An unlearned model's folder carries its space and ledger; building a fresh space from such a model
    would lose the record of earlier requests and let them be applied again, so it must be used.
    """
    config = getattr(model, "config", None)
    folder = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not folder or not os.path.isfile(os.path.join(folder, CGS_DIR, CONFIG_NAME)):
        return None
    where = os.path.join(folder, CGS_DIR)
    space = CoreGradientSpace.from_pretrained(where)
    try:  # a fresh adapter wraps the layers in place: the space's layers are then its base layers (as in ``prepare``)
        modules = peft_targets(model, space.layers).stats_modules if is_peft_model(model) else None
        space.check_model(model, modules=modules)
    except CGSMismatchError as error:
        raise CGSMismatchError(
            f"The model folder carries a Core Gradient Space ({where}) that does not fit the model: {error} "
            "If the model was changed on purpose, pass core_gradient_space= explicitly or move that folder away."
        ) from error
    logger.info("Using the Core Gradient Space saved with the model (%s, %d earlier request(s))", where,
                len(space.ledger))
    return space, where


def shard(dataset, world_size: int, process_index: int):
    """This process's contiguous share, so statistics summed across processes count each row once."""
    return dataset if world_size == 1 else dataset.shard(world_size, process_index, contiguous=True)


class SpaceProtection:
    """Build or load the Core Gradient Space, subtract a request, freeze, and project updates."""

    def __init__(
        self,
        settings: SpaceSettings,
        *,
        space: CoreGradientSpace | None = None,
        original_dataset=None,
        collate_fn=None,
        world_size: int = 1,
        process_index: int = 0,
    ):
        if space is None and original_dataset is None:
            raise ValueError(
                "Projection needs the Core Gradient Space: pass core_gradient_space=CoreGradientSpace."
                "from_pretrained(...) or original_dataset=<training set>."
            )
        self.settings = settings
        self.space = space
        self.original_dataset = original_dataset
        self.collate_fn = collate_fn
        self.world_size = world_size
        self.process_index = process_index
        self.projection: ProjectedUpdates | None = None
        self.gradient_hooks: ProjectedGradients | None = None  # set when an engine owns the step (DeepSpeed)
        self.peft: PeftTargets | None = None
        self.embedding_rows: FreeEmbeddingRows | None = None  # input-embedding rows only forget examples read
        self.space_before_request: CoreGradientSpace | None = None
        self._resumed = False
        self._built = False  # the space was built from the data for this request

    # ------------------------------------------------------------------ the space
    def build(self, model: nn.Module, original_model_inputs) -> CoreGradientSpace:
        """The space of ``original_model_inputs`` (the training set with model columns only)."""
        logger.info("Building the Core Gradient Space from %d training examples", len(self.original_dataset))
        s = self.settings
        layers = base_model_layers(model, s.protect_layers, s.exclude_layers) if is_peft_model(model) else None
        record = CarriedLedger.of(model, CoreGradientSpace)  # its forgotten rows stay out (carried_ledger.py)
        if record is not None:
            original_model_inputs, _ = record.leave_out(original_model_inputs, self.original_dataset)
            logger.info("Leaving out the %d rows forgotten by the %d request(s) in %s", record.num_forgotten,
                        len(record.saved.ledger), record.where)
        stats = collect_gram_matrices(
            model,
            shard(original_model_inputs, self.world_size, self.process_index),
            layers=layers,
            include=s.protect_layers,
            exclude=s.exclude_layers,
            batch_size=s.batch_size,
            collate_fn=self.collate_fn,
            show_progress=s.show_progress,
        )
        columns = self.original_dataset.column_names
        logger.info("Fingerprinting %d training examples for the ledger", len(self.original_dataset))
        space = CoreGradientSpace(
            stats.grams,
            stats.layers,
            stats.num_examples,
            gamma=s.gamma if s.gamma is not None else DEFAULT_GAMMA,
            energy=s.energy if s.energy is not None else DEFAULT_ENERGY,
            model_fingerprint=model_fingerprint(model, stats.layers),
            train_fingerprints=fingerprint_examples(self.original_dataset, columns),
            fingerprint_columns=columns,
            padding=stats.padding,
        )
        return record.carry_into(space) if record is not None else space

    def protected_modules(self, model: nn.Module, space: CoreGradientSpace) -> dict[str, nn.Module]:
        """The module holding each protected layer's weight and inputs (``base_layer`` under PEFT)."""
        if is_peft_model(model):
            self.peft = peft_targets(model, space.layers)
            return self.peft.stats_modules
        modules = dict(model.named_modules())
        return {n: modules[n] for n in space.layers if n in modules}

    def prepare(
        self,
        model: nn.Module,
        *,
        forget_model_inputs,
        forget_dataset,
        original_model_inputs=None,
        note: str = "",
        resume_from_checkpoint: str | None = None,
        checks_only: bool = False,
    ) -> CoreGradientSpace:
        """Every check and the subtraction of the request, before any weight changes. ``checks_only``: the
        checks (space against model, request against ledger) without the forget Grams, the subtraction and the
        projectors, for a request that will take no step (``revert`` afterwards as usual)."""
        saved = os.path.join(resume_from_checkpoint, CGS_DIR) if resume_from_checkpoint else None
        forget_grams = None
        if saved and os.path.isdir(saved):
            # the checkpoint's space already has this request subtracted; its weights moved on purpose
            self.space_before_request = self.space  # None when it was built from the data: see ``revert``
            self._resumed = True
            space = CoreGradientSpace.from_pretrained(saved)
            space.check_model(model, check_weights=False, modules=self.protected_modules(model, space))
        else:
            if self.space is not None:
                self._check_layer_choice(model, self.space)
            self._built = self.space is None
            given = self.space if self.space is not None else self.build(model, original_model_inputs)
            self.space_before_request = given
            # the request is subtracted from a copy: the caller's space, and the saved ledger, change only
            # once ``finish`` finds that the run really unlearned (otherwise it calls ``revert``); the copy shares
            # the Gram tensors until the subtraction replaces them
            space = given.request_copy()
            modules = self.protected_modules(model, space)
            space.check_model(model, modules=modules)
            columns = space.fingerprint_columns or list(forget_dataset.column_names)
            fingerprints = forget_fingerprints(forget_dataset, columns, "The cache", space.fingerprint_key())
            space.check_request(fingerprints)
            if checks_only:
                return given
            forget_stats = collect_gram_matrices(
                model,
                shard(forget_model_inputs, self.world_size, self.process_index),
                layers=modules,
                batch_size=self.settings.batch_size,
                collate_fn=self.collate_fn,
                padding=space.padding,
                show_progress=False,
            )
            space.subtract(forget_stats, fingerprints, note=note)
            forget_grams = forget_stats.grams if self.peft is not None else None  # only a fresh adapter reads them
            del forget_stats  # the rest of the request's Grams go before the decompositions
            if self.space is None:  # built here for this request: not held twice (see ``revert``)
                self.space_before_request = given = None
        self._threshold(space)
        if self.peft is not None:
            if not self._resumed and self.settings.lora_aim_at_forget:
                aim_fresh_adapters(model, space, forget_grams)
            moving = {layer for layer, _, _ in self.peft.updates.values()}  # frozen layers need no decomposition
            self.projection = ProjectedUpdates(space.projectors(names=moving), self.peft.updates)
            self.projection.project_weights([k for k in self.peft.updates if "#lora_A." in k])
        else:
            self.projection = ProjectedUpdates.for_layers(model, space.projectors())
        space.clear_decompositions(keep_values=True)  # the eigenvectors the aim read: the projectors are made
        if self.settings.page_directory:  # no step reads the Grams: out of anonymous memory until the run ends
            space.page_out_grams(self.settings.page_directory)
        self.space = space
        release_freed_memory()  # the request's transient Grams and decompositions, before the steps allocate
        return space

    def _threshold(self, space: CoreGradientSpace) -> None:
        """The run's γ and energy measure where it sets them, else the space's own: a space built with
        ``--gamma 0.95`` keeps 0.95 unless the run asks for another, and then the log says which won."""
        s = self.settings
        for name, ours, its in (("gamma", s.gamma, space.gamma), ("gamma_energy", s.energy, space.energy)):
            if ours is not None and ours != its:
                logger.warning("This run's %s=%s replaces the %s=%s the Core Gradient Space was built (or last saved) "
                               "with.", name, ours, name, its)
        space.set_threshold(s.gamma if s.gamma is not None else space.gamma, s.energy)

    def _check_layer_choice(self, model: nn.Module, space: CoreGradientSpace) -> None:
        """``protect_layers``/``exclude_layers`` choose the layers of a space being built; a given space has its own,
        and options that choose others would be silently ignored."""
        s = self.settings
        if not (s.protect_layers or s.exclude_layers):
            return
        find = base_model_layers if is_peft_model(model) else find_protectable_layers
        chosen = set(find(model, s.protect_layers, s.exclude_layers))
        if chosen != set(space.layers):
            extra, missing = sorted(chosen - set(space.layers)), sorted(set(space.layers) - chosen)
            raise ValueError(
                f"protect_layers={s.protect_layers} / exclude_layers={s.exclude_layers} choose {len(chosen)} layer(s), "
                f"but the given Core Gradient Space protects {len(space.layers)} (it lacks {extra[:3]}, and has "
                f"{missing[:3]} besides): a saved space decides which layers are protected. Drop these options, or "
                "build a space with them (hf-unlearn cgs build --protect_layers ... --output DIR, then "
                "--core_gradient_space DIR)."
            )

    def freeze(self, model: nn.Module, *, freeze_bias_and_norm: bool, train_unprotected: bool) -> None:
        """Only the weights the space protects move (plus LoRA B under PEFT), unless asked otherwise."""
        if self.peft is not None:
            freeze_peft_parameters(
                model, self.peft, freeze_bias_and_norm=freeze_bias_and_norm, train_unprotected=train_unprotected
            )
        else:
            freeze_parameters(
                model,
                protected_layers=set(self.space.layers),
                freeze_bias_and_norm=freeze_bias_and_norm,
                train_unprotected=train_unprotected,
            )

    def free_embedding_rows(self, model: nn.Module, forget, retain, decays: bool) -> None:
        """Let the input-embedding rows of tokens no retain example uses move (``embedding_rows.py``)."""
        self.embedding_rows = free_embedding_rows(model, forget, retain, decays)

    def unproject_forgotten_outputs(
        self, model: nn.Module, forget_inputs: dict, kept_inputs: dict | None, classes: list[int]
    ) -> str | None:
        """Class removal: let the logit rows of ``classes`` move freely; the projected weight's key, or None.

        ``kept_inputs`` (a batch of kept examples) gives the mean kept input that keeps the free rows from
        raising the class on kept examples. Under PEFT the head that outputs the logits is the trainable
        ``modules_to_save`` copy, freed the same way (its key is ``layer#modules_to_save.adapter``).
        """
        if self.projection is None or not classes:
            return None
        candidates = self._projected_modules(model)
        found = forgotten_output_rows(model, candidates, forget_inputs, classes)
        if found is None:
            return None
        key, rows = found
        bias = getattr(candidates[key], "bias", None)
        mean = mean_input(model, candidates[key], kept_inputs) if kept_inputs and bias is not None else None
        self.projection.leave_unprojected(key, rows, kept_mean=mean, bias=bias)
        return key

    def _projected_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """The module of every projected weight, by its projection key (LoRA ``A`` keys left out: no logits)."""
        if self.peft is None:
            modules = self.protected_modules(model, self.space)
            return {n: m for n, m in modules.items() if n in self.projection.weights}
        modules = dict(model.named_modules())
        found = {}
        for key in self.projection.weights:
            name, _, adapter = key.partition("#modules_to_save.")
            if adapter:
                found[key] = saved_copies(modules, name)[1][adapter]
        return found

    # ------------------------------------------------------------------ around every optimizer step
    def project_gradients(self) -> None:
        """Project gradients as autograd makes them instead of applied updates (an engine owns the step)."""
        if self.projection is not None:
            self.gradient_hooks = ProjectedGradients(self.projection)
            self.gradient_hooks.attach()

    def begin_step(self) -> None:
        """Before the first micro-batch of an optimizer step (what gradient projection needs to see first)."""
        if self.gradient_hooks is not None:
            self.gradient_hooks.before_step()

    def snapshot(self, optimizer=None) -> None:
        """Before the step (``optimizer`` may let the projection act on the gradients, see ``updates.py``)."""
        if self.projection is not None and self.gradient_hooks is None:
            self.projection.snapshot(optimizer)

    def project(self) -> None:
        if self.gradient_hooks is not None:
            self.gradient_hooks.after_step()
        elif self.projection is not None:
            self.projection.project()
        if self.embedding_rows is not None:
            self.embedding_rows.restore_kept_rows()

    def revert(self) -> None:
        """The run did not unlearn: keep the space as it was before this request (ledger unchanged).

        A space built from the data for this request is not kept beside its subtracted copy (its Grams would be
        held twice through the whole run), and a resumed run whose space was built from the data has no copy from
        before the request either: such a run then keeps no space at all (the next request builds one) rather
        than one whose ledger lists this request.
        """
        if self.space_before_request is not None:
            self.space = self.space_before_request
        elif self._resumed or self._built:
            self.space = None

    def bind(self, model: nn.Module) -> None:
        """Tie the saved space to the weights it now protects (after training)."""
        modules = self.peft.stats_modules if self.peft is not None else None
        with torch.no_grad():
            self.space.bind_model(model, modules)

    def finish(self, outcome: RunResult, model: nn.Module) -> None:
        """Settle the space after a run: bound to the new weights when the run unlearned (its ledger entry notes
        an incomplete removal), else reverted, so the ledger never records a request that was not carried out."""
        if self.embedding_rows is not None:
            self.embedding_rows.detach()
        if not outcome.unlearned:
            self.revert()
            return
        with whole_parameters(model.parameters()):  # the ledger fingerprints whole weights (ZeRO-3: gathered)
            self.bind(model)
        if outcome.incomplete and self.space.ledger:
            self.space.ledger[-1]["note"] += "; removal incomplete: the stop rule was not met"
