"""What a model reads: which processing classes pad a batch of texts, and which columns ``forward`` takes.

A tokenizer pads, an image processor does not: transformers' image processors have a ``pad`` method
too (batching images of different sizes), so "has ``pad``" does not mean "pads token ids" (an image
classifier's processor, passed on as ``processing_class``, was used to collate pixel rows and failed).
"""

from __future__ import annotations

import inspect


def is_tokenizer(processing_class) -> bool:
    """A tokenizer (pads ``input_ids`` to the longest row), told by duck typing: core needs no transformers."""
    return (
        processing_class is not None
        and hasattr(processing_class, "pad")
        and hasattr(processing_class, "pad_token_id")
        and hasattr(processing_class, "convert_tokens_to_ids")
    )


def forward_inputs(model, data):
    """``data`` cut to the columns ``model.forward`` takes by name, as the trainer feeds it: a tokenised set that
    still carries its raw text works as it is. Data without columns, or a ``forward(input)`` module that names
    none of them, goes as it is."""
    if not hasattr(data, "column_names"):
        return data
    parameters = inspect.signature(model.forward).parameters
    accepted = [c for c in data.column_names if c in parameters]
    return data.select_columns(accepted) if accepted else data
