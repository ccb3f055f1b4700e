"""How a method protects what must be kept, outside the Trainer: PGU's space, freezing, PEFT."""

from ..core.layers import is_peft_model
from .freezing import batch_norms_in_eval_mode, freeze_parameters
from .membership import check_membership, check_unprojected_request, forget_fingerprints
from .peft import PeftTargets, peft_targets
from .space import CGS_DIR, SpaceProtection, SpaceSettings, space_saved_with
from .updates import ProjectedUpdates

__all__ = [
    "CGS_DIR",
    "PeftTargets",
    "ProjectedUpdates",
    "SpaceProtection",
    "SpaceSettings",
    "batch_norms_in_eval_mode",
    "check_membership",
    "check_unprojected_request",
    "forget_fingerprints",
    "freeze_parameters",
    "is_peft_model",
    "peft_targets",
    "space_saved_with",
]
