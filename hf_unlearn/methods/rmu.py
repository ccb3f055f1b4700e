"""RMU: representation misdirection; the forget texts' hidden states at one layer are steered to a fixed random vector.

Li et al., "The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning", ICML 2024 (arXiv
2403.03218). With h^ℓ the output of transformer layer ℓ, u a fixed random unit vector (entries drawn uniformly
from [0, 1), then normalised, as in the paper; seeded with the run's seed) and c the steering coefficient:
L_forget = mean over forget examples of the mean over their tokens of ‖h_θ^ℓ(x) − c·u‖² / d and
L_retain = the same of ‖h_θ^ℓ(x_r) − h_ref^ℓ(x_r)‖² / d against a frozen copy of the original (made in
``setup``); the loss is L_forget + α·L_retain. d is the hidden size: the paper writes the squared norm, its code
and OpenUnlearning's take the mean over the hidden units (``mse_loss``), the scale their c and α were tuned at
(1/d rescales both terms alike). Every real token counts (the attention mask): the paper steers whole forget
texts, prompt included; OpenUnlearning, on question/answer pairs, only the answer's.

Scrambling the representation at a middle layer makes every later layer read noise on the forget topic,
while the retain term pins the retained texts' representation where it was.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import MethodConfig, Paper, UnlearningMethod, frozen_copy, split_labels

PARAMS = ("all", "mlp")
MLP_NAMES = ("mlp", "feed_forward", "ffn")  # the MLP child of a transformer block (Llama, GPT-2, Mistral, NeoX, ...)
PAPER_LAYER, PAPER_DEPTH = 7, 32  # the paper's layer 7 of Zephyr-7B's 32
UPDATED_BELOW = 2  # with rmu_params="mlp" the layers ℓ − 2 … ℓ move, as in the paper


@dataclass
class RMUConfig(MethodConfig):
    """Hyperparameters of RMU (``method="rmu"``); the defaults are OpenUnlearning's ``RMU`` trainer on TOFU.

    The recommended training values are the published causal-LM ones (AdamW, lr 1e-5, 10 epochs: OpenUnlearning's
    TOFU runs on full weights; the paper's WMDP run, which moves only three MLP projections, uses 5e-5). There is
    one set of defaults for every model: on a LoRA adapter or a small classifier pass a larger ``learning_rate``.

    Args:
        rmu_layer (`int`, defaults to `-1`):
            Index of the transformer layer ℓ whose output is steered, counted from 0 in the model's layer stack
            (``model.layers``, GPT-2's ``h``, BERT's ``encoder.layer``); -1 takes the paper's depth, ⌊7·L/32⌋ of L
            layers (the paper's layer 7 of Zephyr-7B's 32; OpenUnlearning steers layer 7 at any depth).
        rmu_steering_coeff (`float`, defaults to `2.0`):
            The steering coefficient c, the length of the target c·u (OpenUnlearning's 2; the paper used 6.5 on
            Zephyr-7B; it should grow with the layer's activation norm); positive.
        rmu_alpha (`float`, defaults to `1.0`):
            Weight α of the retain term (OpenUnlearning's 1; the paper's 1200 on Zephyr-7B, with c = 6.5);
            non-negative.
        rmu_params (`str`, defaults to `"all"`):
            Which weights move: ``"all"`` (every trainable weight, OpenUnlearning's default; under PEFT the
            adapter) or ``"mlp"`` (the paper's choice: only the MLP output projections of layers ℓ − 2 … ℓ, e.g.
            Llama's ``down_proj``, GPT-2's ``c_proj``; the rest is frozen in ``setup``).
    """

    rmu_layer: int = field(
        default=-1, metadata={"help": "Layer whose output is steered (from 0); -1: floor(7*L/32), the paper's depth."}
    )
    rmu_steering_coeff: float = field(
        default=2.0, metadata={"help": "Steering coefficient c (OpenUnlearning's 2; the paper's 6.5 on Zephyr-7B)."}
    )
    rmu_alpha: float = field(
        default=1.0, metadata={"help": "Weight of the retain activation loss (OpenUnlearning's 1; paper's 1200)."}
    )
    rmu_params: str = field(
        default="all",
        metadata={"help": "Weights that move: 'all' or 'mlp' (the MLP output projections of layers l-2..l, as the "
                          "paper).", "choices": list(PARAMS)},
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-5, "num_train_epochs": 10.0}
    paper = Paper(
        title="The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning",
        authors="Li, Nathaniel and Pan, Alexander and Gopal, Anjali and Yue, Summer and Berrios, Daniel and others",
        venue="ICML",
        year=2024,
        arxiv="2403.03218",
    )

    def __post_init__(self):
        if isinstance(self.rmu_layer, bool) or not isinstance(self.rmu_layer, int) or self.rmu_layer < -1:
            raise ValueError(f"rmu_layer must be a layer index (0 or more) or -1 (the paper's depth), got "
                             f"{self.rmu_layer!r}")
        if not self.rmu_steering_coeff > 0:
            raise ValueError(f"rmu_steering_coeff must be positive, got {self.rmu_steering_coeff}")
        if not self.rmu_alpha >= 0:
            raise ValueError(f"rmu_alpha must be non-negative, got {self.rmu_alpha}")
        if self.rmu_params not in PARAMS:
            raise ValueError(f"rmu_params must be one of {PARAMS}, got {self.rmu_params!r}")


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer layers: of the ``nn.ModuleList``s whose entries share one class, the one
    holding the most parameters (``model.layers`` of Llama, ``transformer.h`` of GPT-2, ``bert.encoder.layer``)."""
    stacks = [
        (sum(p.numel() for p in module.parameters()), name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1
        and any(True for _ in module.parameters())
    ]
    if not stacks:
        raise ValueError(
            f"RMU steers the output of one transformer layer, but {type(model).__name__} has no stack of layers "
            "(an nn.ModuleList of identical blocks, such as model.layers or bert.encoder.layer)."
        )
    _, name, module = max(stacks, key=lambda s: s[0])
    return name, module


def resolve_layer(requested: int, num_layers: int) -> int:
    """``requested`` checked against the stack's depth; -1 is the paper's relative depth, ⌊7·L/32⌋."""
    if requested == -1:
        return PAPER_LAYER * num_layers // PAPER_DEPTH
    if requested >= num_layers:
        raise ValueError(f"rmu_layer={requested}, but the model has {num_layers} layers (0 … {num_layers - 1}).")
    return requested


def steering_direction(dim: int, seed: int) -> torch.Tensor:
    """The paper's random unit vector: entries uniform on [0, 1), normalised; drawn on CPU from ``seed``."""
    vector = torch.rand(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (vector / vector.norm()).float()


def mlp_output_parameters(layers: nn.ModuleList, indices: range) -> list[nn.Parameter]:
    """The trainable parameters of each layer's MLP output projection: the last child of its MLP that holds
    parameters (``down_proj``, ``c_proj``, ``dense_4h_to_h``; under PEFT its LoRA weights)."""
    params = []
    for index in indices:
        mlp = next((child for n in MLP_NAMES if isinstance(child := getattr(layers[index], n, None), nn.Module)),
                   None)
        if mlp is None:
            raise ValueError(f"rmu_params='mlp': layer {index} ({type(layers[index]).__name__}) has no MLP child "
                             f"named {' / '.join(MLP_NAMES)}; use rmu_params='all'.")
        owners = [child for child in mlp.children() if any(True for _ in child.parameters())]
        if owners:
            params += [p for p in owners[-1].parameters() if p.requires_grad]
    return params


def token_distance(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over examples of the mean over their real tokens of ‖hidden − target‖² / d."""
    hidden = hidden.float()
    if hidden.dim() == 2:  # one vector per example
        hidden = hidden[:, None]
    per_token = (hidden - target.float()).pow(2).mean(-1)
    if mask is None or mask.shape != per_token.shape:
        return per_token.mean()
    mask = mask.to(per_token.dtype)
    return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


@contextmanager
def captured_output(module: nn.Module):
    """Record ``module``'s output (the hidden states when it returns a tuple) while the block runs."""
    seen: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


class RMU(UnlearningMethod):
    """Forget texts' layer-ℓ activations steered to c·u, retain texts' held at a frozen copy's (made in ``setup``),
    both in ``compute_loss``; with ``rmu_params="mlp"`` only the MLP output projections of layers ℓ − 2 … ℓ stay
    trainable; no projection."""

    name = "rmu"
    needs_retain = True  # with the default alpha; an instance with rmu_alpha = 0 reads no retain stream
    config_class = RMUConfig

    def __init__(self, config: MethodConfig, seed: int = 0):
        super().__init__(config, seed)
        self.needs_retain = self.config.rmu_alpha > 0

    def setup(self, context):
        model = context.model
        name, layers = layer_stack(model)
        self.layer_index = resolve_layer(self.config.rmu_layer, len(layers))
        self.layer_name = f"{name}.{self.layer_index}"
        self.layer = layers[self.layer_index]
        self.reference = frozen_copy(model)
        self.reference_layer = self.reference.get_submodule(self.layer_name)
        self.direction: torch.Tensor | None = None
        if self.config.rmu_params == "mlp":
            self._train_only(model, mlp_output_parameters(layers, range(max(0, self.layer_index - UPDATED_BELOW),
                                                                         self.layer_index + 1)))

    @staticmethod
    def _train_only(model: nn.Module, keep: list[nn.Parameter]) -> None:
        if not keep:
            raise ValueError("rmu_params='mlp': none of the MLP output projections of the chosen layers is trainable "
                             "(an adapter without them?); use rmu_params='all'.")
        kept = {id(p) for p in keep}
        for param in model.parameters():
            if id(param) not in kept:
                param.requires_grad_(False)

    def hidden_states(
        self, model: nn.Module, layer: nn.Module, inputs: dict
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer ℓ's output for ``inputs`` and the real-token mask (the labels are not read)."""
        features, _ = split_labels(inputs)
        with captured_output(layer) as seen:
            model(**features)
        return seen[-1], features.get("attention_mask")

    def target(self, hidden: torch.Tensor) -> torch.Tensor:
        """c·u, the direction drawn once from the run's seed at the layer's width."""
        if self.direction is None:
            self.direction = steering_direction(hidden.shape[-1], self.seed)
        return self.config.rmu_steering_coeff * self.direction.to(hidden.device)

    def compute_loss(self, context, model, batch):
        hidden, mask = self.hidden_states(model, self.layer, batch["forget"])
        if torch.is_grad_enabled() and not hidden.requires_grad:  # else the Trainer's backward fails obscurely
            raise ValueError(f"RMU: the output of {self.layer_name} carries no gradient, so no trainable weight lies "
                             "at or below it (an adapter on later layers only?); pick rmu_layer above a trained one.")
        forget = token_distance(hidden, self.target(hidden), mask)
        self.track("forget_loss", forget.detach())
        if not self.needs_retain:
            return forget
        retain_hidden, retain_mask = self.hidden_states(model, self.layer, batch["retain"])
        with torch.no_grad():
            reference, _ = self.hidden_states(self.reference, self.reference_layer, batch["retain"])
        retain = token_distance(retain_hidden, reference, retain_mask)
        self.track("retain_loss", retain.detach())
        return forget + self.config.rmu_alpha * retain
