"""PGU's pieces on causal LMs (GPT-2 with a tied head, Llama untied): kept outputs stay, forget loss rises."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hf_unlearn.core import CoreGradientSpace
from hf_unlearn.core.layers import UnsupportedLayerError, find_protectable_layers
from hf_unlearn.protection.freezing import freeze_parameters
from hf_unlearn.protection.updates import ProjectedUpdates

VOCAB = 60


def _model(family):
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1,
                                          eos_token_id=2))
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))


def _batch(lengths, seed):
    """Right-padded token ids with their attention mask (pad id 0): padding must never count."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _outputs(model, layers, batch):
    """Every protected layer's output at the real tokens of ``batch``."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, out.detach().clone()))
             for n, m in layers.items()]
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()
    return {n: (v[real] if v.dim() == 3 else v) for n, v in seen.items()}


def _lm_loss(model, batch):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=labels).loss


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_projected_ascent_on_forget_texts_leaves_every_layer_unchanged_on_kept_texts(family, one_thread):
    model = _model(family)
    kept, forget = _batch([7, 5, 4], seed=0), _batch([6, 6], seed=1)  # 16 kept tokens: fewer than any width
    space = CoreGradientSpace.from_model(model, [kept], gamma=1.0, show_progress=False)
    layers = find_protectable_layers(model)
    assert set(space.layers) == set(layers)
    if family == "gpt2":  # the head is the embedding table: not protected, frozen with the embeddings
        assert "lm_head" not in space.layers
        with pytest.raises(UnsupportedLayerError, match="embedding table"):
            find_protectable_layers(model, include=["lm_head"])
    else:
        assert "lm_head" in space.layers
        attention = {f"model.layers.0.self_attn.{p}_proj" for p in "qkv"}
        assert len({id(space.grams[n]) for n in attention}) == 1  # q, k, v read one input: one Gram
    freeze_parameters(model, protected_layers=set(space.layers), freeze_bias_and_norm=True, train_unprotected=False)
    before, loss_before = _outputs(model, layers, kept), _lm_loss(model, forget).item()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        updates.snapshot()
        loss = -_lm_loss(model, forget)  # gradient ascent on the forget texts
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        updates.project()
    after = _outputs(model, layers, kept)
    assert _lm_loss(model, forget).item() > loss_before + 0.05
    for name in layers:
        scale = before[name].abs().max().item()
        assert (after[name] - before[name]).abs().max().item() <= 1e-5 * max(1.0, scale), name
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
