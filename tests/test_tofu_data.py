"""TOFU-shaped data: reproducible, the paraphrase states the fact, the perturbed answers state other values
of the same kind in the paraphrase's wording, and the splits are TOFU's, by person."""

import re

import pytest

from hf_unlearn.data.fictitious_facts import (
    COLOURS,
    INSTRUMENTS,
    JOBS,
    TOWN_ENDINGS,
    fictitious_facts,
    invented_people,
)
from hf_unlearn.data.tofu_shaped import (
    CAPITALS,
    forget_count,
    is_invented_name,
    known_words,
    load_tofu_shaped_dataset,
    tofu_shaped_facts,
    tofu_splits,
    world_facts,
)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


def _template(text: str, value: str, name: str) -> str:
    """The wording around a value: the name and then the value blanked out, the article made neutral (a true
    dog's name may be its owner's first name)."""
    return re.sub(r"\ban\b", "a", text.replace(name, "@").replace(value, "#"))


def test_the_facts_are_reproducible_and_depend_on_the_seed():
    assert tofu_shaped_facts(6, seed=3).to_list() == tofu_shaped_facts(6, seed=3).to_list()
    assert tofu_shaped_facts(6, seed=3).to_list() != tofu_shaped_facts(6, seed=4).to_list()


def test_the_rows_extend_fictitious_facts_and_do_not_depend_on_how_many_people_are_asked_for():
    extended, plain = tofu_shaped_facts(8, seed=1), fictitious_facts(8, seed=1)
    for row, base in zip(extended, plain, strict=True):
        assert {key: row[key] for key in base} == base
    assert tofu_shaped_facts(5, seed=1).to_list() == extended.select(range(25)).to_list()


def test_the_paraphrase_states_the_fact_in_other_words():
    for row in tofu_shaped_facts(20, seed=0):
        assert row["paraphrased_answer"] != row["answer"]
        assert row["fact"] in _words(row["paraphrased_answer"])


@pytest.mark.parametrize("num_perturbed", [3, 5])
def test_perturbed_answers_state_other_values_of_the_same_kind_in_the_paraphrase_wording(num_perturbed):
    pools = {"works as": JOBS, "plays the": INSTRUMENTS, "favourite colour": COLOURS}
    names = [person["name"] for person in invented_people(20, seed=0)]
    for row in tofu_shaped_facts(20, seed=0, num_perturbed=num_perturbed):
        name = names[row["person"]]
        wrong, perturbed = row["perturbed_facts"], row["perturbed_answers"]
        assert len(perturbed) == len(set(perturbed)) == len(set(wrong)) == num_perturbed
        assert row["fact"] not in wrong
        pool = next((p for phrase, p in pools.items() if phrase in row["answer"]), None)
        for value, answer in zip(wrong, perturbed, strict=True):
            assert value in _words(answer) and value not in name.split()
            assert row["fact"] not in _words(answer.replace(name, "@"))
            assert _template(answer, value, name) == _template(row["paraphrased_answer"], row["fact"], name)
            if pool is not None:
                assert value in pool
            else:  # towns and dog names are invented, the towns with a town ending
                assert is_invented_name(value)
                assert ("born" in row["question"]) == value.endswith(TOWN_ENDINGS)


def test_world_facts_compare_the_capital_with_other_capitals_in_the_same_wording():
    facts = world_facts(seed=0, num_perturbed=4)
    capitals = {city for _, city in CAPITALS}
    assert len(facts) == len(CAPITALS)
    for row in facts:
        assert row["fact"] in _words(row["answer"]) and row["fact"] in _words(row["paraphrased_answer"])
        assert len(set(row["perturbed_facts"])) == 4 and row["fact"] not in row["perturbed_facts"]
        assert set(row["perturbed_facts"]) <= capitals
        for value, answer in zip(row["perturbed_facts"], row["perturbed_answers"], strict=True):
            assert answer == row["answer"].replace(row["fact"], value)


@pytest.mark.parametrize("num_people, counts", [(100, (1, 5, 10)), (200, (2, 10, 20)), (40, (1, 2, 4))])
def test_forget_sizes_follow_the_percentages_with_at_least_one_person(num_people, counts):
    assert tuple(forget_count(p, num_people) for p in (1, 5, 10)) == counts


def _people(split) -> set[int]:
    return set(split["person"])


def test_the_splits_are_tofus_disjoint_by_person_and_nested():
    data = load_tofu_shaped_dataset(num_people=40, seed=0, num_perturbed=3)
    full = _people(data["full"])
    assert full == set(range(40)) and len(data["full"]) == 200
    previous: set[int] = set()
    for percent, count in zip((1, 5, 10), (1, 2, 4), strict=True):
        forget, retain = _people(data[f"forget{percent:02d}"]), _people(data[f"retain{100 - percent:02d}"])
        holdout = _people(data[f"holdout{percent:02d}"])
        assert len(forget) == len(holdout) == count
        assert forget | retain == full and not forget & retain
        assert not holdout & full and holdout == set(range(40, 40 + count))
        assert forget == set(range(40 - count, 40)) and previous <= forget  # TOFU's last people, nested
        previous = forget
        sets = tofu_splits(data, percent)
        assert _people(sets["forget"]) == forget and _people(sets["retain"]) == retain
        assert sets["world_facts"]["question"] == data["world_facts"]["question"]
    assert len(data["world_facts"]) == len(CAPITALS)


def test_the_loader_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="held-out"):
        load_tofu_shaped_dataset(num_people=10, holdout_people=0)
    with pytest.raises(ValueError, match="held-out"):
        load_tofu_shaped_dataset(num_people=1)
    with pytest.raises(ValueError, match="percent"):
        tofu_splits(load_tofu_shaped_dataset(num_people=10, num_perturbed=1), 2)
    with pytest.raises(ValueError, match="num_perturbed"):
        tofu_shaped_facts(2, num_perturbed=10)


def test_the_vocabulary_knows_the_templates_and_names_are_recognised_by_their_syllables():
    assert {"born", "capital", "profession", "violin", "paris", "know"} <= known_words()
    assert is_invented_name("Kalo") and is_invented_name("Sadorville")
    assert not is_invented_name("kalo") and not is_invented_name("Odalysiac") and not is_invented_name("KaLo")
