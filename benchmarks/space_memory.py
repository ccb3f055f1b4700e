"""How large a Core Gradient Space is, from shapes alone (nothing is allocated).

    .venv/bin/python benchmarks/space_memory.py            # BERT-base, ViT-base, Llama-7B shapes

Each model is built on the ``meta`` device from its config and run once on a meta input with hooks on
every protectable layer, so the layers that read the *same* input tensor (q/k/v, gate/up) are found
from the computation, not from their names. A layer with input width d holds a d×d Gram. Printed per
model: the protected layers, their distinct inputs, and the space's size stored per layer in float64
(the format before sharing), with equal Grams stored once (format 4) in float64, and in float32 (what
``push_core_gradient_space`` uploads), beside the model's own size in float32.
"""

from __future__ import annotations

import argparse

import torch
from results_io import table_from_markdown, write_results
from transformers import AutoModel, BertConfig, LlamaConfig, ViTConfig

from hf_unlearn.core.layers import find_protectable_layers, layer_info

CONFIGS = {
    "bert-base": (BertConfig(), lambda: {"input_ids": torch.zeros(1, 8, dtype=torch.long, device="meta")}),
    "vit-base": (ViTConfig(), lambda: {"pixel_values": torch.zeros(1, 3, 224, 224, device="meta")}),
    "llama-7b": (
        LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=32, vocab_size=32000),
        lambda: {"input_ids": torch.zeros(1, 8, dtype=torch.long, device="meta")},
    ),
}


def space_shapes(name: str) -> dict:
    """Protected layers, their input widths and which of them read the same tensor."""
    config, inputs = CONFIGS[name]
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    if name == "llama-7b":  # the LM head reads the final hidden states too: protect it like any Linear
        with torch.device("meta"):
            model.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
    layers = find_protectable_layers(model)
    seen: dict[str, object] = {}
    def record(name):
        def hook(module, args):
            seen.setdefault(name, args[0])  # kept alive, so no two inputs share an id; returns None

        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    with torch.no_grad():
        out = model(**inputs())
        if name == "llama-7b":
            model.lm_head(out.last_hidden_state)
    for hook in hooks:
        hook.remove()
    widths = {}
    for n, m in layers.items():
        widths[n] = layer_info(m).input_dim
        seen.setdefault(n, m)  # a layer the forward did not reach: its own input
    distinct: dict[int, int] = {}
    for n, tensor in seen.items():
        distinct.setdefault(id(tensor), widths[n])
    params = sum(p.numel() for p in model.parameters())
    return {"layers": len(layers), "inputs": len(distinct), "per_layer": sum(d * d for d in widths.values()),
            "shared": sum(d * d for d in distinct.values()), "params": params, "widths": list(distinct.values())}


def low_rank_bytes(widths: list[int], rank: int) -> int:
    """``CoreGradientSpace.compress(rank)``: float32 vectors (d x r) and float64 values (r) per distinct input."""
    return sum(4 * d * min(rank, d) + 8 * min(rank, d) for d in widths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(CONFIGS))
    parser.add_argument("--ranks", nargs="*", type=int, default=[256, 512])
    args = parser.parse_args(argv)
    low = "".join(f" low-rank r={r} |" for r in args.ranks)
    lines = ["| model | protected layers | distinct inputs | per layer, float64 | shared, float64 | shared, float32 "
             f"|{low} model, float32 |", "|---|---|---|---|---|---|" + "---|" * len(args.ranks) + "---|"]
    for name in args.models:
        s = space_shapes(name)
        gb = 1024**3
        low = "".join(f" {low_rank_bytes(s['widths'], r) / gb:.2f} GB |" for r in args.ranks)
        lines.append(f"| {name} | {s['layers']} | {s['inputs']} | {8 * s['per_layer'] / gb:.2f} GB | "
                     f"{8 * s['shared'] / gb:.2f} GB | {4 * s['shared'] / gb:.2f} GB |{low} "
                     f"{4 * s['params'] / gb:.2f} GB |")
    print("\n".join(lines))
    title = "Size of a Core Gradient Space, from shapes (models built on the meta device)"
    write_results("space_memory", {"tables": {"sizes": table_from_markdown("\n".join(lines), title)}})


if __name__ == "__main__":
    main()
