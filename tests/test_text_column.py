"""The recipe finds the text column a sequence classifier reads when --text_column is not given."""

import pytest
from datasets import Dataset, DatasetDict
from transformers import BertConfig, BertForSequenceClassification

from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification
from hf_unlearn.scripts.text_column import infer_text_column


def _data(**columns):
    return DatasetDict(train=Dataset.from_dict(columns))


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


def test_a_text_classifier_reads_the_datas_only_text_column(bert_folder):
    assert infer_text_column(_data(snippet=["a", "b"], label=[0, 1], score=[0.1, 0.2]), bert_folder) == "snippet"


@pytest.mark.parametrize("columns, named", [
    (dict(title=["a"], body=["b"], label=[0]), "'title', 'body'"),
    (dict(score=[0.5], label=[0]), "none"),
])
def test_several_or_no_text_columns_are_refused_by_name(bert_folder, columns, named):
    with pytest.raises(ValueError, match=f"BertForSequenceClassification.*text columns are {named}.*--text_column"):
        infer_text_column(_data(**columns), bert_folder)


def test_a_model_that_does_not_read_text_keeps_the_image_path(tmp_path):
    SmallCNNForImageClassification(SmallCNNConfig(num_labels=3)).save_pretrained(tmp_path)
    assert infer_text_column(_data(caption=["a"], label=[0]), str(tmp_path)) is None


def test_texts_are_cut_to_the_models_positions_and_a_longer_limit_is_refused(bert_folder):
    from hf_unlearn.data.tokenization import DEFAULT_MAX_LENGTH, resolve_max_length
    from hf_unlearn.scripts.text_column import model_positions

    positions = model_positions(bert_folder)
    assert positions == 512 and model_positions("/no/such/model") is None
    assert resolve_max_length(None, None, "here", positions=64) == 64 < DEFAULT_MAX_LENGTH
    assert resolve_max_length(None, None, "here", positions=positions) == DEFAULT_MAX_LENGTH
    assert resolve_max_length(32, None, "here", positions=64) == 32
    with pytest.raises(ValueError, match="--max_length 100 is more tokens than the model has positions \\(64\\)"):
        resolve_max_length(100, None, "here", positions=64)
