"""Run under torchrun: a SISA ensemble trained and a deletion served by two processes (DDP inside each shard).

Writes ``result.json`` (rank 0): whether the shard retrained by the deletion equals the same shard retrained
from scratch by the same two processes, and which files the ensemble folder holds.
"""

import json
import sys
from pathlib import Path

import torch
from rank_exit import leave

from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.exact import SISAEnsemble, TrainingRecipe
from hf_unlearn.models import SmallCNNConfig

if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    train = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0)["train"].select(range(160))
    recipe = TrainingRecipe(num_train_epochs=2, per_device_train_batch_size=16, seed=0)
    ensemble = SISAEnsemble.train(SmallCNNConfig(), train, recipe, output_dir=out / "e", num_shards=2, num_slices=2)
    forget = ensemble.state["assignment"][0][1][:2]
    ensemble.unlearn(forget)
    scratch = ensemble.retrain_shard(0, from_slice=0, output_dir=out / "scratch")
    final = ensemble.models[0].state_dict()
    equal = all(torch.equal(v, scratch.state_dict()[k]) for k, v in final.items())
    if torch.distributed.get_rank() == 0:
        files = sorted(str(p.relative_to(out / "e")) for p in (out / "e").rglob("model.safetensors"))
        (out / "result.json").write_text(json.dumps({"equal": equal, "files": files,
                                                      "world": torch.distributed.get_world_size(),
                                                      "pending": ensemble.state["pending"]}))
    leave()
