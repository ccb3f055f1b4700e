"""How the library refuses: a space of another model, a request the ledger cannot accept, a setup it does not run."""


class CGSMismatchError(ValueError):
    """The cache does not belong to this model (other layers, shapes or weights)."""


class LedgerError(ValueError):
    """A deletion request the ledger cannot accept (empty, repeated, or unknown examples)."""


class UnsupportedSetupError(RuntimeError):
    """A run configuration the library refuses on purpose (a sharding layout, an engine, several processes),
    with what to run instead: raised before any weight changes."""


def not_training_examples(rows: list[int], total: int, columns: list[str] | None) -> str:
    """Why a request naming ``rows`` (positions in the forget set) is refused, and the usual cause when the space
    fingerprinted processed inputs: the rows are training rows, processed differently than when it was built."""
    shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
    processed = [c for c in ("input_ids", "pixel_values") if c in (columns or [])]
    hint = (
        f" Training rows fail this when their {processed[0]} differ from when the space was built: process them "
        "exactly as then (the same tokenizer, max_length and truncation; `hf-unlearn cgs build` and the recipe cut "
        "texts at --max_length 128)."
        if processed else ""
    )
    return (
        f"{len(rows)} of {total} forget examples (forget rows {shown}) are not in the data this cache was built from "
        f"(compared on columns {columns}). Only training examples can be forgotten.{hint}"
    )


def on_meta_device(where: str) -> str:
    """Why a model whose weights were never loaded (``device="meta"``) is refused, and the fix."""
    return (
        f"{where} has weights on the meta device: they were never loaded (init_empty_weights, device_map='meta', or "
        "a low_cpu_mem_usage load that did not finish), so there is nothing to compute with. Load the model with "
        "its weights (from_pretrained(path) without a meta device map), or materialise them "
        "(model.to_empty(device='cpu') then load_state_dict) first."
    )


def refuse_meta_weights(model) -> None:
    """Raise ``ValueError`` (with the fix) when ``model`` holds weights that were never loaded."""
    if any(getattr(p, "is_meta", False) for p in model.parameters()):
        raise ValueError(on_meta_device(f"The model ({type(model).__name__})"))


def refuse_frozen_model(model) -> None:
    """Raise ``ValueError`` (with the fix) when no parameter of ``model`` requires a gradient.

    ``merge_and_unload()`` hands back the base weights with ``requires_grad=False``, as PEFT left them: such a
    model can be evaluated and saved, yet no step of any method can move it, and the later freezing of biases
    and norms would blame the protected layers.
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"No parameter of the model ({type(model).__name__}) requires a gradient, so nothing can be unlearned. "
            "A model merged from a LoRA adapter (merge_and_unload) keeps its weights frozen: call "
            "model.requires_grad_(True) to unlearn its own weights, or pass a PEFT model to unlearn through an "
            "adapter."
        )
