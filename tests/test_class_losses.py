"""Class removal losses: PGU's entropy and the retain cross-entropy look at the kept classes only."""

import torch
import torch.nn.functional as F

from hf_unlearn.methods.pgu import pgu_forget_loss
from hf_unlearn.methods.pgu_retain import kept_class_cross_entropy


def test_entropy_over_the_kept_classes_only():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4), torch.full((5,), 1)
    margin = pgu_forget_loss(logits, labels, 0.05, 1.0, 0.0)
    kept = [0, 2, 3]
    probs = logits[:, kept].softmax(-1)
    expected = margin + 0.2 * (probs * probs.log()).sum(-1).mean()
    torch.testing.assert_close(pgu_forget_loss(logits, labels, 0.05, 1.0, 0.2, kept), expected)
    # one kept class (binary removal): the entropy term is constant and pulls nothing back up
    binary = torch.randn(5, 2, requires_grad=True)
    loss = pgu_forget_loss(binary, torch.ones(5, dtype=torch.long), 0.05, 1.0, 0.2, [0])
    torch.testing.assert_close(loss, pgu_forget_loss(binary, torch.ones(5, dtype=torch.long), 0.05, 1.0, 0.0))


def test_retain_cross_entropy_leaves_the_removed_class_logit_alone():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 2, 3, 0, 3, 2])
    loss = kept_class_cross_entropy(logits, labels, [0, 2, 3])
    torch.testing.assert_close(loss, F.cross_entropy(logits[:, [0, 2, 3]], torch.tensor([0, 1, 2, 0, 2, 1])))
    loss.backward()
    assert torch.all(logits.grad[:, 1] == 0) and logits.grad[:, [0, 2, 3]].abs().sum() > 0
    torch.testing.assert_close(kept_class_cross_entropy(logits, labels, None), F.cross_entropy(logits, labels))
