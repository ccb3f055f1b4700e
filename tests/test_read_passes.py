"""Read-only passes (checks, feature reads, statistics): they leave the global random stream as they found it, and
say what to pass when rows cannot form a batch."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from hf_unlearn.core.covariance import as_batches
from hf_unlearn.core.loaders import read_loader
from hf_unlearn.evaluation.predict import collect_outputs


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, pixel_values):
        return type("Out", (), {"logits": self.linear(pixel_values)})()


class Bag(nn.Module):
    """A text model in miniature: token ids in, logits out."""

    def __init__(self):
        super().__init__()
        self.embed = nn.EmbeddingBag(10, 2)

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.embed(input_ids)})()


def _rows() -> Dataset:
    torch.manual_seed(1)
    return Dataset.from_dict({"pixel_values": torch.randn(10, 3).tolist(), "labels": [0, 1] * 5}).with_format("torch")


def test_a_plain_dataloader_draws_from_the_global_stream_and_a_read_loader_does_not():
    rows = list(range(10))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(DataLoader(rows, batch_size=4))  # the fact the read loader exists for
    assert not torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(0)
    list(read_loader(rows, 4))
    assert torch.equal(torch.get_rng_state(), before)
    assert [b.tolist() for b in read_loader(rows, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # in order


def test_a_check_pass_and_a_statistics_pass_leave_the_training_stream_unchanged():
    rows = _rows()
    torch.manual_seed(0)
    model = Tiny()  # its initialisation draws from the stream: the state after it is what must hold
    before = torch.get_rng_state()
    out = collect_outputs(model, rows, batch_size=4)
    list(as_batches(rows, batch_size=4))
    assert torch.equal(torch.get_rng_state(), before)
    assert out["logits"].shape == (10, 2) and out["labels"].tolist() == [0, 1] * 5


def test_token_rows_of_different_lengths_without_a_collator_say_what_to_pass():
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6]], "labels": [0, 1, 0]})
    with pytest.raises(ValueError, match=r"collate_fn=DataCollatorWithPadding\(tokenizer\)"):
        collect_outputs(Bag(), rows, batch_size=3)
    same = Dataset.from_dict({"input_ids": [[1, 2], [4, 5], [6, 7]], "labels": [0, 1, 0]})
    assert collect_outputs(Bag(), same, batch_size=3)["logits"].shape == (3, 2)  # equal lengths need nothing


def test_a_tokenized_set_that_keeps_its_raw_text_is_read_as_the_trainer_reads_it():
    rows = Dataset.from_dict({"text": ["a b", "c d", "e f"], "input_ids": [[1, 2], [4, 5], [6, 7]],
                              "labels": [0, 1, 0]})
    def stack_every_column(batch):  # as a padding collator does, it turns every column into a tensor
        return {k: torch.tensor([r[k] for r in batch]) for k in batch[0]}

    model = Bag()
    plain = collect_outputs(model, rows.remove_columns("text"), batch_size=2, collate_fn=stack_every_column)
    kept_text = collect_outputs(model, rows, batch_size=2, collate_fn=stack_every_column)
    assert torch.equal(kept_text["logits"], plain["logits"])
