"""Whole weights under DeepSpeed ZeRO-3, where each parameter holds only this process's partition.

The guard's snapshots (which its finiteness check reads) and rollbacks and the ledger's fingerprint read or write
whole weights. Under ZeRO-3 a parameter's ``data`` is an empty placeholder between forward passes, so
these go through ``deepspeed.zero.GatheredParameters``: one parameter at a time for the snapshots and
rollbacks (a process holds one extra whole weight), all at once for the fingerprint
at the end of a run. Every process must make the same calls in the same order: the gathers are
collective. Without ZeRO-3 (no ``ds_id`` on any parameter) nothing here does anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch


def is_partitioned(param: torch.Tensor) -> bool:
    """A ZeRO-3 parameter (DeepSpeed tags each with ``ds_id``)."""
    return hasattr(param, "ds_id")


@contextlib.contextmanager
def whole_parameters(params: Iterable[torch.Tensor], modify: bool = False) -> Iterator[None]:
    """Inside, the partitioned ones among ``params`` hold their whole value; with ``modify`` what process 0
    writes into them is kept (every process writes the same in this library's uses)."""
    partitioned = [p for p in params if is_partitioned(p)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0 if modify else None):
        yield


@contextlib.contextmanager
def loading_whole() -> Iterator[None]:
    """``from_pretrained`` inside loads whole weights even when the run's DeepSpeed config is ZeRO-3.

    transformers partitions a model as it loads (``zero.Init``) whenever the TrainingArguments of a ZeRO-3 run
    exist; the trainer's checks before the first step need the weights whole, and ZeRO-3 partitions them
    when its engine starts anyway. The cost: each process holds the whole model until then.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    held = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)  # transformers keeps it module-global
    config = held() if held is not None else None
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)
