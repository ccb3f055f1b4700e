"""Push a SISA ensemble to the Hub: the shard models, its record of deletions, and a card that says both.

By default only each shard's final model goes up (what inference needs). The per-slice checkpoints
make later deletions cheap; push them with ``include_checkpoints=True`` if the copy on the Hub is
meant to serve deletions too (without them a deletion retrains the affected shards whole, with the
same result).
"""

from __future__ import annotations

# ``ensemble`` is a ``hf_unlearn.exact.SISAEnsemble``; not imported here, which imports this module to push
import shutil
import tempfile
from pathlib import Path

CARD = """---
library_name: hf-unlearn
tags:
- machine-unlearning
- sisa
- hf-unlearn
---

# SISA ensemble: {shards} shard models, {slices} slices each

Trained with `hf_unlearn.exact.SISAEnsemble` (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021) on
{examples} examples: every shard model saw only its own {per_shard} examples, so deleting an example
retrains only its shard, and the result is exactly what training that shard without it gives.

- Recipe per shard: {recipe}
- Deletions carried out: {deleted} examples in {requests} request(s){request_list}
- Slice checkpoints in this repository: {checkpoints}
- Predictions: the mean of the shard models' class probabilities (or a majority vote).

```python
from huggingface_hub import snapshot_download
from hf_unlearn.exact import SISAEnsemble

ensemble = SISAEnsemble.from_pretrained(snapshot_download("{repo_id}"))
predictions = ensemble.predict(test_dataset)          # aggregation="vote" for a majority vote
```

Each shard model is weaker than one model trained on all the data; measure the ensemble on your own
test set before relying on it.
"""


def render_card(ensemble, repo_id: str, include_checkpoints: bool) -> str:
    state = ensemble.state
    requests = state["requests"]
    listed = "".join(
        f"\n  - request {n}: {r['examples']} example(s), shard(s) {r['shards']} retrained"
        for n, r in enumerate(requests, 1)
    )
    recipe = ", ".join(f"{k}={v}" for k, v in state["recipe"].items())
    return CARD.format(
        shards=ensemble.num_shards,
        slices=ensemble.num_slices,
        examples=state["num_train_examples"],
        per_shard=f"~{state['num_train_examples'] // ensemble.num_shards}",
        recipe=f"{recipe}; {state['epochs_per_stage']:g} epoch(s) per slice stage",
        deleted=len(state["deleted"]),
        requests=len(requests),
        request_list=listed,
        checkpoints="yes (deletions retrain from the last unaffected slice)"
        if include_checkpoints
        else "no (final models only; a deletion from this copy retrains the affected shards whole)",
        repo_id=repo_id,
    )


def stage_ensemble(ensemble, folder: str | Path, repo_id: str, include_checkpoints: bool) -> Path:
    """Write what a push uploads into ``folder`` (a dry run shows exactly this)."""
    if ensemble.state["pending"]:
        raise ValueError(f"Shards {ensemble.state['pending']} are still pending: finish the deletion first.")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for name in (ensemble.config_file, "config.json"):
        shutil.copy2(ensemble.folder / name, target / name)
    for shard in range(ensemble.num_shards):
        stages = range(ensemble.num_slices) if include_checkpoints else [ensemble.num_slices - 1]
        for stage in stages:
            source = ensemble.stage_dir(shard, stage)
            shutil.copytree(source, target / source.relative_to(ensemble.folder), dirs_exist_ok=True)
    (target / "README.md").write_text(render_card(ensemble, repo_id, include_checkpoints))
    return target


def push_ensemble_to_hub(
    ensemble,
    repo_id: str,
    *,
    include_checkpoints: bool = False,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload SISA ensemble",
) -> str:
    """Create ``repo_id`` if needed and upload the staged ensemble; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sisa_push_") as staging:
        stage_ensemble(ensemble, staging, repo_id, include_checkpoints)
        commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message)
    return str(commit)
