"""Which processing classes pad a batch of texts: a tokenizer, not an image processor.

transformers' image processors have a ``pad`` method too (batching images of different sizes), so
"has ``pad``" no longer means "pads token ids": an image classifier's processor, passed on as
``processing_class``, was used to collate pixel rows and failed on them.
"""

from __future__ import annotations


def is_tokenizer(processing_class) -> bool:
    """A tokenizer (pads ``input_ids`` to the longest row), told by duck typing: core needs no transformers."""
    return (
        processing_class is not None
        and hasattr(processing_class, "pad")
        and hasattr(processing_class, "pad_token_id")
        and hasattr(processing_class, "convert_tokens_to_ids")
    )
