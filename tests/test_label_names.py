"""Labels written as names in a user's files: mapped to the model's ids, or refused with a reason."""

import csv
import json
import logging

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertConfig

from hf_unlearn.data.label_names import class_ids, encode_labels, named_labels
from hf_unlearn.data.requests import check_label_range


def _names(train, validation=("ham", "spam")):
    return DatasetDict(train=Dataset.from_dict({"x": list(range(len(train))), "labels": list(train)}),
                       validation=Dataset.from_dict({"x": [0] * len(validation), "labels": list(validation)}))


def _config(id2label=None, num_labels=2):
    return BertConfig(num_labels=num_labels, **({"id2label": id2label} if id2label else {}))


def test_names_take_the_sorted_order_when_the_config_has_placeholders_and_say_so(caplog):
    data = _names(["spam", "ham", "spam", "ham"], validation=["spam"])
    data["unlabelled"] = Dataset.from_dict({"x": [1, 2]})  # a split without labels passes through untouched
    with caplog.at_level(logging.WARNING):
        encoded, mapping = encode_labels(data, _config())
    assert mapping == {"ham": 0, "spam": 1}
    assert encoded["train"]["labels"] == [1, 0, 1, 0] and encoded["validation"]["labels"] == [1]
    assert encoded["train"].features["labels"] == Value("int64")  # a collator gets ints, not '1'
    assert encoded["unlabelled"]["x"] == [1, 2]
    assert "sorted order" in caplog.text and "'spam' -> 1" in caplog.text


def test_the_models_own_names_win_over_the_sorted_order():
    config = _config({0: "spam", 1: "ham"})
    encoded, mapping = encode_labels(_names(["spam", "ham", "ham"]), config)
    assert mapping == {"spam": 0, "ham": 1} and encoded["train"]["labels"] == [0, 1, 1]
    assert named_labels(config) == {0: "spam", 1: "ham"} and named_labels(_config()) is None


def test_a_name_the_model_does_not_know_or_too_many_names_are_refused():
    with pytest.raises(ValueError, match=r"\['phish'\] are not among the model's labels"):
        encode_labels(_names(["spam", "phish"]), _config({0: "ham", 1: "spam"}))
    with pytest.raises(ValueError, match="names 3 labels .* predicts 2"):
        encode_labels(_names(["spam", "ham", "phish"]), _config())


def test_id_labels_pass_untouched_and_class_label_names_can_be_used():
    plain = DatasetDict(train=Dataset.from_dict({"x": [0, 1], "labels": [1, 0]}))
    same, mapping = encode_labels(plain, _config())
    assert same is plain and mapping is None
    features = Features({"x": Value("int64"), "labels": ClassLabel(names=["neg", "pos"])})
    hub = DatasetDict(train=Dataset.from_dict({"x": [0, 1], "labels": [1, 0]}, features=features))
    assert encode_labels(hub, _config())[1] == {"neg": 0, "pos": 1}


def test_a_csv_label_column_named_label_is_mapped_in_place_and_named_in_the_refusal():
    """transformers' examples and most csvs call the column 'label': the advice must work for it as written."""
    class Model:
        config = _config({0: "ham", 1: "spam"})

    data = DatasetDict(train=Dataset.from_dict({"x": [0, 1, 2], "label": ["spam", "ham", "spam"]}))
    with pytest.raises(ValueError, match=r"labels are names .*\{'label': model\.config\.label2id\[r\['label'\]\]\}"):
        check_label_range(Model(), forget=data["train"])
    encoded, mapping = encode_labels(data, Model.config)
    assert mapping == {"ham": 0, "spam": 1} and encoded["train"]["label"] == [1, 0, 1]
    assert encoded["train"].features["label"] == Value("int64") and "labels" not in encoded["train"].column_names
    check_label_range(Model(), forget=encoded["train"])  # ids now: accepted


def test_forget_classes_are_ids_or_names():
    assert class_ids([3, "7"], None) == [3, 7]
    assert class_ids(["spam"], {"ham": 0, "spam": 1}) == [1]
    assert class_ids(["spam"], None, _config({0: "spam", 1: "ham"})) == [0]
    with pytest.raises(ValueError, match="'spma' is neither a label id nor a label name .*'spam'"):
        class_ids(["spma"], {"ham": 0, "spam": 1})


def test_the_trainer_refuses_names_and_fractions_with_a_way_to_fix_them():
    class Model:
        config = _config()

    names = Dataset.from_dict({"x": [0, 1], "labels": ["ham", "spam"]})
    with pytest.raises(ValueError, match="labels are names .*'ham'.*encode_labels"):
        check_label_range(Model(), forget=names)
    fractions = Dataset.from_dict({"x": [0, 1], "labels": [0.5, 1.0]})
    with pytest.raises(ValueError, match="not whole numbers"):
        check_label_range(Model(), forget=fractions)


def test_the_text_recipe_forgets_a_class_named_in_a_csv_of_names(tmp_path):
    """A csv of 'ham'/'spam' and --forget_class spam: the spam rows are the request, the model's ids are used."""
    from text_fixtures import save_text_model, write_messages

    import recipes.unlearn as recipe

    numbers = write_messages(tmp_path / "numbers.csv")
    model = save_text_model(tmp_path / "model", numbers)
    files = {}
    for name, source in (("train", numbers), ("validation", write_messages(tmp_path / "v.csv", n=60, seed=1))):
        rows = list(csv.DictReader(open(source)))
        files[name] = tmp_path / f"{name}.csv"
        with open(files[name], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows([r["text"], ["ham", "spam"][int(r["label"])]] for r in rows)
    out = tmp_path / "run"
    recipe.main(["--model_name_or_path", str(model), "--data_files", str(files["train"]), "--validation_file",
                 str(files["validation"]), "--text_column", "text", "--label_column", "label", "--forget_class",
                 "spam", "--output_dir", str(out), "--disable_tqdm", "true", "--logging_strategy", "no"])
    ledger = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    spam = sum(line.endswith(",spam") for line in files["train"].read_text().splitlines())
    assert [entry["num_examples"] for entry in ledger] == [spam] and 0 < spam < 160  # every spam row, no ham
    metrics = json.loads((out / "unlearning_metrics.json").read_text())
    # the same request as a filter on the csv's own column and names
    filtered = tmp_path / "filtered"
    recipe.main(["--model_name_or_path", str(model), "--data_files", str(files["train"]), "--validation_file",
                 str(files["validation"]), "--text_column", "text", "--label_column", "label", "--forget_filter",
                 "label==spam", "--output_dir", str(filtered), "--disable_tqdm", "true", "--logging_strategy", "no"])
    ledger = json.loads((filtered / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    assert [entry["num_examples"] for entry in ledger] == [spam]
    card = (out / "README.md").read_text()
    # the original predicted these rows right (a reversed mapping would start at 0 %), the unlearned one does not
    assert "class removal" in card and "accuracy: forget 100.0 → 0.0 %" in card, card
    assert metrics["eval_forget_accuracy"] == 0.0 and metrics["eval_test_accuracy_kept_classes"] >= 90.0


def test_multi_label_and_regression_models_are_refused_before_anything_runs():
    class Model:
        def __init__(self, problem_type=None):
            self.config = _config()
            self.config.problem_type = problem_type

    for problem in ("regression", "multi_label_classification"):
        with pytest.raises(ValueError, match=f"problem_type is '{problem}'.*one class per example"):
            check_label_range(Model(problem), forget=Dataset.from_dict({"x": [0], "labels": [1]}))
    vectors = Dataset.from_dict({"x": [0, 1], "labels": [[1.0, 0.0], [0.0, 1.0]]})
    with pytest.raises(ValueError, match=r"label vector per example \(shape \(2, 2\)\)"):
        check_label_range(Model(), forget=vectors)


def test_a_forget_filter_on_the_label_column_takes_its_names():
    from hf_unlearn.data.forget import indices_from_filter

    data = Dataset.from_dict({"x": [0, 1, 2, 3], "labels": [1, 0, 1, 0]})
    names = {"ham": 0, "spam": 1}
    assert indices_from_filter(data, "label==spam", names, label_column="label") == [0, 2]  # the user's column name
    assert indices_from_filter(data, 'labels in ["ham"]', names) == [1, 3]
    assert indices_from_filter(data, "labels==1", names) == [0, 2]  # ids still work
    with pytest.raises(ValueError, match="names label 'phish'; the labels are \\['ham', 'spam'\\]"):
        indices_from_filter(data, "label==phish", names, label_column="label")
    with pytest.raises(ValueError, match="column 'label' is not in the dataset"):
        indices_from_filter(data, "label==spam")  # nothing says the column was renamed


def test_the_trainer_refuses_label_names_before_any_other_check(trained_model, digits, tmp_path):
    """The root cause first: with names in the label column the overlap and membership checks would refuse the rows
    for looking unlike the training data, which says nothing about the fix."""
    from hf_unlearn import UnlearningArguments, UnlearningTrainer

    named = digits["train"].select(range(60)).cast_column("labels", Value("string"))
    args = UnlearningArguments(output_dir=str(tmp_path), method="finetune", report_to="none")
    with pytest.raises(ValueError, match="forget set's labels are names"):
        # rows 10-19 in both sets: without the early check the overlap check refused them first
        UnlearningTrainer(model=trained_model, args=args, forget_dataset=named.select(range(20)),
                          retain_dataset=named.select(range(10, 60)), original_dataset=digits["train"])
