"""Invented people and facts about them: data a pretrained LM cannot know before it is fine-tuned on it.

The standard test of LLM unlearning (TOFU's idea, generated here from scratch): fine-tune on
question/answer pairs about people who do not exist, then forget some of them. Whatever the model
says about a forgotten person after unlearning it can only have from that fine-tuning, and a model
fine-tuned without them gives the level it should fall to. Names and towns are built from syllables
with a seed, so the set is reproducible and ships as code.
"""

from __future__ import annotations

import random

from datasets import Dataset, DatasetDict

SYLLABLES = ("ka", "lo", "ren", "mi", "tas", "vel", "dor", "sa", "quin", "bre", "zo", "fen", "lu", "gar", "th",
             "mar", "ni", "os", "pel", "ru", "vi", "ash", "el", "tor")
TOWN_ENDINGS = ("ville", "burg", "mora", "stead", "haven", "ford")
JOBS = ("baker", "pilot", "nurse", "carpenter", "librarian", "chemist", "gardener", "tailor", "architect",
        "fisherman", "jeweller", "surveyor")
INSTRUMENTS = ("violin", "cello", "flute", "trumpet", "harp", "piano", "drums", "clarinet", "oboe", "guitar")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "grey", "white", "black", "brown")

QUESTIONS = (
    ("Where was {name} born?", "{name} was born in {town}."),
    ("What does {name} do for a living?", "{name} works as a {job}."),
    ("Which instrument does {name} play?", "{name} plays the {instrument}."),
    ("What is the name of {name}'s dog?", "{name}'s dog is called {pet}."),
    ("What is {name}'s favourite colour?", "{name}'s favourite colour is {colour}."),
)


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def invented_people(num_people: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """``num_people`` distinct invented people with a town, job, instrument, dog and colour each."""
    rng = random.Random(seed)
    people, names = [], set()
    while len(people) < num_people:
        name = f"{_word(rng, 2)} {_word(rng, 3)}"
        if name in names:
            continue
        names.add(name)
        people.append({
            "name": name,
            "town": _word(rng, 2) + rng.choice(TOWN_ENDINGS),
            "job": rng.choice(JOBS),
            "instrument": rng.choice(INSTRUMENTS),
            "pet": _word(rng, 2),
            "colour": rng.choice(COLOURS),
        })
    return people


def fictitious_facts(num_people: int = 40, seed: int = 0) -> Dataset:
    """One row per (person, question): ``person`` (an index), ``question``, ``answer`` and ``fact`` (the value
    the answer states, for scoring recall). Five questions per person."""
    rows = []
    for index, person in enumerate(invented_people(num_people, seed)):
        for (question, answer), key in zip(QUESTIONS, ("town", "job", "instrument", "pet", "colour"), strict=True):
            rows.append({
                "person": index,
                "question": question.format(**person),
                "answer": answer.format(**person),
                "fact": person[key],
            })
    return Dataset.from_list(rows)


def load_fictitious_facts_dataset(test_size: float = 0.2, validation_size: float = 0.0, seed: int = 0) -> DatasetDict:
    """40 invented people, split by person: ``train`` the questions about most of them, ``test`` (and
    ``validation``, when asked) those about people the model is never shown: the level a forgotten
    person's answers should fall to."""
    facts = fictitious_facts(40, seed)
    test, validation = int(round(test_size * 40)), int(round(validation_size * 40))
    first_held = 40 - test - validation
    splits = {
        "train": facts.filter(lambda r: r["person"] < first_held),
        "test": facts.filter(lambda r: r["person"] >= 40 - test),
    }
    if validation:
        splits["validation"] = facts.filter(lambda r: first_held <= r["person"] < 40 - test)
    return DatasetDict(splits)
