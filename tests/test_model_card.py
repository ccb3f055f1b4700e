"""The model card's YAML header is huggingface_hub's own ``ModelCardData``: it parses back, validates, and holds
only what the run measured; the template reads only names it is given."""

import dataclasses
import itertools

import jinja2
import pytest
from card_fixtures import COMPARISON, card_data
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_unlearn.cards.model_card import render_model_card

LEDGER = [{"request": 1, "num_examples": 7, "created_at": "2025-01-02T03:04:05", "note": "pgu: 7 examples"}]


def _metadata(data) -> ModelCardData:
    card = ModelCard(render_model_card(data))
    assert isinstance(card.data, ModelCardData)
    return card.data


def _measured(metadata: ModelCardData) -> dict[str, float]:
    return {result.metric_type: result.metric_value for result in metadata.eval_results or []}


def test_the_header_parses_and_validates_through_huggingface_hub(tmp_path):
    text = render_model_card(card_data(COMPARISON, LEDGER, model_name="digits-unlearned"))
    card = ModelCard(text)
    assert str(card) == text  # the header is exactly what huggingface_hub writes for this metadata
    metadata = card.data
    assert metadata.library_name == "transformers" and metadata.base_model == "org/base-model"
    assert metadata.tags == ["hf_unlearn", "machine-unlearning", "pgu"]
    assert metadata.model_name == "digits-unlearned"
    assert all(isinstance(r, EvalResult) for r in metadata.eval_results)
    result = metadata.eval_results[0]
    assert (result.task_type, result.dataset_type) == ("machine-unlearning", "custom")
    assert _measured(metadata) == {"ua": 98.0, "ra": 98.5, "ta": 97.0, "mia": 96.0, "avg_gap": 1.75}
    # only Hub ids are published as datasets and base model: a local folder is neither a link nor public
    local = tmp_path / "my-data"
    local.mkdir()
    data = dataclasses.replace(card_data(), base_model="./models/mine", datasets=["org/data", str(local), "../x/y"])
    metadata = _metadata(data)
    assert metadata.datasets == ["org/data"] and metadata.base_model is None
    assert _metadata(dataclasses.replace(card_data(), datasets=[str(local)])).datasets is None


def test_a_metric_is_in_the_model_index_only_when_measured():
    assert _metadata(card_data()).eval_results is None  # no comparison: no model-index at all
    assert "model-index" not in render_model_card(card_data())
    no_mia = {name: {k: v for k, v in row.items() if k != "MIA"} for name, row in COMPARISON.items()}
    assert _measured(_metadata(card_data(no_mia))) == {"ua": 98.0, "ra": 98.5, "ta": 97.0}  # and no Avg. Gap
    undefined_mia = {name: {**row, "MIA": float("nan")} for name, row in COMPARISON.items()}  # one kept class
    assert _measured(_metadata(card_data(undefined_mia))) == {"ua": 98.0, "ra": 98.5, "ta": 97.0, "avg_gap": 1.0}
    without_reference = {k: v for k, v in COMPARISON.items() if k != "retrain"}
    assert _measured(_metadata(card_data(without_reference))) == {"ua": 98.0, "ra": 98.5, "ta": 97.0, "mia": 96.0}
    # the original and the reference were measured, the unlearned model was not: nothing is claimed for it
    assert _metadata(card_data({k: v for k, v in COMPARISON.items() if k != "pgu"})).eval_results is None


def test_the_template_reads_only_names_it_is_given(monkeypatch):
    """Jinja renders a misspelt name as nothing; a strict environment makes every card variant fail instead."""
    monkeypatch.setattr(jinja2, "Template",
                        lambda source: jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source))
    flags = itertools.product([None, True, False], [None, COMPARISON], [[], LEDGER], [None, "gamma=0.8"], [False, True])
    for unlearned, comparison, ledger, projection, switch in flags:
        data = dataclasses.replace(
            card_data(comparison, ledger, projection=projection), unlearned=unlearned, adapter=switch,
            space_published=switch, merged_adapter_base="org/base" if switch else "", outcome="it stopped" if switch
            else "", backtracks=int(switch), growths=int(switch), warnings=["retain fell"] if switch else [],
            incomplete="still predicted" if switch else "", paper_title=None if switch else "A paper",
            seconds=None if switch else 1.0, stopped_epoch=None if switch else 2.0, method_config={} if switch else
            {"a": 1}, comparison_reference="fine-tuned" if switch else "",
        )
        assert render_model_card(data).startswith("---\n")
    with pytest.raises(jinja2.UndefinedError):
        ModelCard.from_template(ModelCardData(), template_str="{{ data.misspelt }}", data=card_data())


def test_a_class_removal_card_names_test_accuracy_on_the_kept_classes():
    kept = {name: {**row, "TA_all_classes": row["TA"] - 9.0} for name, row in COMPARISON.items()}
    data = dataclasses.replace(card_data(kept), scenario="class")
    card = render_model_card(data)
    assert "| model | UA | RA | TA (kept classes) | MIA | Avg. Gap |" in card
    assert "| pgu | 98.00 | 98.50 | 97.00 | 96.00 | 1.75 |" in card  # the kept-class TA, not the all-class one
    assert "TA (kept classes) = test accuracy on the classes that were not removed" in card
    assert "TA = test accuracy" not in card
    results = {r.metric_type: r for r in _metadata(data).eval_results}
    assert "ta" not in results and results["ta_kept_classes"].metric_value == 97.0
    assert results["ta_kept_classes"].metric_name == "Test accuracy on the kept classes"
    plain = render_model_card(card_data(COMPARISON))
    assert "TA = test accuracy," in plain and "kept classes" not in plain
    with pytest.raises(ValueError, match="evaluate every model with the same forgotten_classes"):
        render_model_card(card_data({**COMPARISON, "pgu": kept["pgu"]}))


def test_a_local_model_is_named_by_its_folder_and_a_generic_folder_by_its_parent_too(tmp_path):
    from hf_unlearn.cards.model_card import public_name

    (tmp_path / "minilm-topics" / "model").mkdir(parents=True)
    assert public_name(str(tmp_path / "minilm-topics")) == "a local model (minilm-topics)"
    assert public_name(str(tmp_path / "minilm-topics" / "model")) == "a local model (minilm-topics/model)"
    assert str(tmp_path) not in public_name(str(tmp_path / "minilm-topics" / "model"))  # no absolute path
    assert public_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
