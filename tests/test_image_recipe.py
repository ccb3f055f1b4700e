"""An image classifier as a new user has one: a folder of PNGs per class, a ViT saved with its image processor."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models
from transformers import BertTokenizerFast, ViTConfig, ViTForImageClassification, ViTImageProcessor

from hf_unlearn.core.processing import is_tokenizer

NAMES = ["circle", "square"]


def _image(label: int, rng: np.random.Generator) -> Image.Image:
    """A bright disc (circle) or block (square) on noise: two classes a tiny ViT learns in a few epochs."""
    pixels = rng.integers(0, 60, size=(16, 16)).astype(np.uint8)
    yy, xx = np.mgrid[:16, :16]
    shape = ((yy - 8) ** 2 + (xx - 8) ** 2 < 20) if label == 0 else ((abs(yy - 8) < 4) & (abs(xx - 8) < 4))
    pixels[shape] = 230
    return Image.fromarray(pixels)


@pytest.fixture
def image_task(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for split, count in (("train", 48), ("validation", 16)):
        for i in range(count):
            folder = root / split / NAMES[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            _image(i % 2, rng).save(folder / f"{i}.png")
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=2,
                       id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    images = [_image(i % 2, np.random.default_rng(i)) for i in range(64)]
    pixels = processor([im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
    labels = torch.tensor([i % 2 for i in range(64)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = model(pixel_values=pixels, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(tmp_path / "vit")
    processor.save_pretrained(tmp_path / "vit")
    return root, tmp_path / "vit"


def test_an_image_processor_is_not_taken_for_a_tokenizer():
    """transformers' image processors have ``pad`` too: they once collated pixel rows as if they were token ids."""
    assert hasattr(ViTImageProcessor(), "pad")  # why "has pad" is not enough
    assert not is_tokenizer(ViTImageProcessor()) and not is_tokenizer(None)
    core = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]"))
    assert is_tokenizer(BertTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]"))


def test_the_recipe_unlearns_a_class_named_in_an_image_folder(image_task, tmp_path):
    import recipes.unlearn as recipe
    from hf_unlearn.cli import main as cli

    root, model = image_task
    common = ["--model_name_or_path", str(model), "--dataset_name", str(root), "--image_column", "image",
              "--label_column", "label"]
    cli(["cgs", "build", *common])  # the image processor prepares the pixels; it pads nothing
    out = tmp_path / "run"
    recipe.main([*common, "--forget_class", "square", "--output_dir", str(out), "--disable_tqdm", "true",
                 "--logging_strategy", "no"])
    ledger = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    assert [entry["num_examples"] for entry in ledger] == [24]  # every square of the training folder
    card = (out / "README.md").read_text()
    assert "class removal" in card and "forget 100.0 → 0.0 %" in card, card
    assert "rows [1] of `classifier`" in card  # 'square' is id 1 in the model's own id2label
