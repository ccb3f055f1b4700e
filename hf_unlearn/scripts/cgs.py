"""``hf-unlearn cgs build|info|push``: the Core Gradient Space as a thing you make once and keep.

Building the space costs about one pass over the training data, as much as an epoch of fine-tuning;
do it right after training, store it with the model (``MODEL/core_gradient_space``, where the
trainer and the recipe find it), inspect it, and publish it with the model when you mean to.

    hf-unlearn cgs build --model_name_or_path ./my-model --data_files train.csv --text_column text
    hf-unlearn cgs info ./my-model/core_gradient_space
    hf-unlearn cgs push ./my-model/core_gradient_space --repo_id me/my-model
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from ..core import CoreGradientSpace
from ..core.energy import DEFAULT_ENERGY, DEFAULT_GAMMA, check_energy, check_gamma
from ..core.processing import is_tokenizer
from ..data.causal_lm import causal_lm_space, is_causal_lm
from ..data.tokenization import DEFAULT_MAX_LENGTH, tokenization_record
from .arguments import ScriptArguments
from .user_errors import parse_known_flags

logger = logging.getLogger(__name__)
USAGE = "usage: hf-unlearn cgs {build,info,push} [options]   (hf-unlearn cgs build --help for its options)"


@dataclass
class BuildArguments:
    """Where the space goes and how it is thresholded (γ can be changed later without rebuilding)."""

    output: str | None = field(
        default=None, metadata={"help": "Folder to write (default: MODEL/core_gradient_space, found automatically)."}
    )
    gamma: float = field(
        default=DEFAULT_GAMMA,
        metadata={"help": "Energy share protected per layer (0 < gamma <= 1); later runs keep it unless they set one."},
    )
    gamma_energy: str = field(default=DEFAULT_ENERGY, metadata={"help": "'sigma' or 'sigma2'."})
    batch_size: int = field(default=64, metadata={"help": "Batch size of the statistics pass."})
    protect_layers: list[str] | None = field(default=None, metadata={"help": "Layer patterns to protect."})
    exclude_layers: list[str] | None = field(default=None, metadata={"help": "Layer patterns never protected."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a space already in the output folder."})
    low_rank: int | None = field(
        default=None,
        metadata={
            "help": "Store each layer's Gram as its top-R eigenpairs ((d+1)*R numbers instead of d*d per input; what "
            "is dropped is bounded, see docs/cgs.md 5b). Shrinks the saved and loaded space; building it still "
            "holds the dense Grams."
        },
    )

    def __post_init__(self):  # before the model and the data load
        self.gamma = check_gamma(self.gamma)
        check_energy(self.gamma_energy, "gamma_energy")


def build(argv: list[str]) -> Path:
    """Build the space of a saved model from the data it was trained on and write it."""
    from .unlearn import load_model_and_data

    script_args, build_args = parse_known_flags(HfArgumentParser((ScriptArguments, BuildArguments)), argv)
    output = Path(build_args.output or Path(script_args.model_name_or_path, "core_gradient_space"))
    if (output / "cgs_config.json").exists() and not build_args.overwrite:  # said before anything loads
        raise FileExistsError(
            f"{output} already holds a Core Gradient Space (and its ledger). Pass --overwrite true to replace it."
        )
    script_args.max_length = script_args.max_length or DEFAULT_MAX_LENGTH
    model, data, _, processing_class, *_ = load_model_and_data(script_args)
    train = data[script_args.train_split]
    print(f"Building the Core Gradient Space of {script_args.model_name_or_path} from {len(train)} examples")
    start = time.perf_counter()
    options = {"include": build_args.protect_layers, "exclude": build_args.exclude_layers,
               "batch_size": build_args.batch_size, "gamma": build_args.gamma, "energy": build_args.gamma_energy}
    if is_causal_lm(model):  # tokenised as the trainer will, fingerprinted as the rows are given
        space = causal_lm_space(model, train, processing_class, max_length=script_args.max_length, **options)
    else:
        space = CoreGradientSpace.from_model(model, train, processing_class=processing_class, **options)
    if is_tokenizer(processing_class):  # every later run cuts texts as this build did
        space.provenance["tokenization"] = tokenization_record(processing_class, script_args.max_length)
    if build_args.low_rank is not None:
        space.compress(build_args.low_rank)
        bound = max(g.dropped_bound / max(float(g.values[0]), 1e-300) for g in space.grams.values())
        print(f"Compressed to rank {build_args.low_rank}: the largest dropped eigenvalue is {bound:.2e} of its "
              "layer's top one")
    space.save_pretrained(output)
    print(f"Wrote {output} ({len(space.layers)} layers, {_size(output) / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - start:.1f} s")
    return output


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def describe(folder: str | Path) -> dict:
    """What a saved space holds (verified on load): layers and ranks, examples, ledger, size, key id."""
    path = Path(folder)
    space = CoreGradientSpace.from_pretrained(path)
    return {
        "path": str(path),
        "num_examples": space.num_examples,
        "gamma": space.gamma,
        "energy": space.energy,
        "size_bytes": _size(path),
        "fingerprint_columns": space.fingerprint_columns,
        "fingerprint_key_id": space.fingerprint_key_id,
        "tokenization": space.provenance.get("tokenization"),
        "model_fingerprint": space.model_fingerprint,
        "layers": space.summary(),
        "ledger": space.ledger,
    }


def info(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="hf-unlearn cgs info", description="Inspect a saved space.")
    parser.add_argument("folder")
    parser.add_argument("--json", action="store_true", help="Print everything as JSON.")
    args = parser.parse_args(argv)
    facts = describe(args.folder)
    if args.json:
        print(json.dumps(facts, indent=2))
        return facts
    print(f"{facts['path']}: {facts['num_examples']} examples kept, {len(facts['layers'])} layers, "
          f"{facts['size_bytes'] / 2**20:.1f} MiB, gamma {facts['gamma']} ({facts['energy']} energy), "
          f"ledger key id {facts['fingerprint_key_id']}")
    print("layer | kind | input dim | protected rank")
    for layer in facts["layers"]:
        print(f"{layer['layer']} | {layer['kind']} | {layer['dim']} | {layer['rank']}")
    print(f"ledger: {len(facts['ledger'])} request(s)")
    for entry in facts["ledger"]:
        note = entry.get("note", "")
        print(f"  #{entry['request']}: {entry['num_examples']} examples at {entry['created_at']} {note}")
    return facts


def push(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="hf-unlearn cgs push", description="Upload a saved space to a Hub repo.")
    parser.add_argument("folder")
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--path_in_repo", default="core_gradient_space")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None)
    parser.add_argument("--acknowledge_space_history", type=lambda v: v.lower() in ("1", "true", "yes"),
                        nargs="?", const=True, default=False,
                        help="Push although the space records served requests or the repo's history holds a space "
                        "(two published versions reveal the rows forgotten between them).")
    args = parser.parse_args(argv)
    space = CoreGradientSpace.from_pretrained(args.folder)  # never publish a space that does not verify
    from huggingface_hub import HfApi

    from ..training.space_history import check_space_push, reaching_the_hub

    api = HfApi(token=args.token)
    with reaching_the_hub(f"push {args.folder} to {args.repo_id}"):
        check_space_push(space, api, args.repo_id, token=args.token, acknowledged=args.acknowledge_space_history)
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=args.repo_id,
            folder_path=args.folder,
            path_in_repo=args.path_in_repo,
            allow_patterns=["cgs_config.json", "cgs.safetensors"],
            commit_message="Add Core Gradient Space",
        )
    print(f"Pushed {args.folder} to {args.repo_id}/{args.path_in_repo}")
    return str(commit)


def main(argv: list[str] | None = None):
    argv = list(argv or [])
    commands = {"build": build, "info": info, "push": push}
    if not argv or argv[0] not in commands:
        print(USAGE)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    logging.basicConfig(level=logging.INFO)
    return commands[argv[0]](argv[1:])
