"""TOFU-shaped data: invented people with paraphrased and perturbed answers, split as TOFU splits its authors.

TOFU (Maini et al. 2024) scores a forgotten fact by how the model ranks the true answer, reworded, against
fluent wrong ones written the same way: a model that never learned the fact has no reason to prefer it.
Each question about an invented person (``fictitious_facts``) gets a ``paraphrased_answer`` (the same value
in other words) and ``perturbed_answers`` (the paraphrase's wording with another value of the same kind:
another invented town or dog name, another job, instrument or colour). A short list of world facts
(capitals) stands for TOFU's "world facts": knowledge a pretrained model has and unlearning should keep.

Everything is generated from the seed, one generator per row, so a row does not depend on how many people
were asked for and the set ships as code.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from datasets import Dataset, DatasetDict

from .english_words import ENGLISH_WORDS
from .fictitious_facts import COLOURS, INSTRUMENTS, JOBS, QUESTIONS, SYLLABLES, TOWN_ENDINGS, invented_people

FACT_KEYS = ("town", "job", "instrument", "pet", "colour")  # the value each of QUESTIONS asks for, in order
PARAPHRASES = (
    "{town} is the town where {name} was born.",
    "By profession, {name} is {a_job}.",
    "The instrument {name} plays is the {instrument}.",
    "{name} has a dog named {pet}.",
    "The colour {name} likes best is {colour}.",
)
FORGET_PERCENTS = (1, 5, 10)
CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("England", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"),
    ("Turkey", "Ankara"), ("Kenya", "Nairobi"),
)
WORLD_QUESTION = "What is the capital of {country}?"
WORLD_ANSWER = "The capital of {country} is {city}."
WORLD_PARAPHRASE = "{city} is the capital city of {country}."


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _invented(rng: random.Random, key: str) -> str:
    """A fresh invented value of the kind ``key`` names (towns and dog names are made, not drawn from a list)."""
    word = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
    return word + rng.choice(TOWN_ENDINGS) if key == "town" else word


def wrong_values(true_value: str, key: str, count: int, rng: random.Random, avoid: frozenset[str] = frozenset()
                 ) -> list[str]:
    """``count`` distinct values of the kind ``key`` names, none equal to ``true_value`` or in ``avoid`` (the
    words of the person's name: a dog named like its owner would read as the name, not as a wrong value)."""
    pools = {"job": JOBS, "instrument": INSTRUMENTS, "colour": COLOURS}
    if key in pools:
        others = [value for value in pools[key] if value != true_value]
        if count > len(others):
            raise ValueError(f"Only {len(others)} wrong values of {key!r} exist; asked for {count}.")
        return rng.sample(others, count)
    values: list[str] = []
    while len(values) < count:
        value = _invented(rng, key)
        if value != true_value and value not in values and value not in avoid:
            values.append(value)
    return values


def _paraphrase(template: str, person: dict[str, str], key: str, value: str) -> str:
    fields = {**person, key: value}
    return template.format(**fields, a_job=_with_article(fields["job"]))


def tofu_shaped_facts(num_people: int = 100, seed: int = 0, *, num_perturbed: int = 5) -> Dataset:
    """``fictitious_facts(num_people, seed)`` with ``paraphrased_answer``, ``perturbed_answers`` and the wrong
    values they state (``perturbed_facts``). ``person``, ``question``, ``answer`` and ``fact`` are the same
    rows as ``fictitious_facts``', so a model fine-tuned on either is evaluated on these."""
    if not 1 <= num_perturbed <= 9:
        raise ValueError(f"num_perturbed must lie in [1, 9] (the smallest value list has 10), got {num_perturbed}")
    rows = []
    for index, person in enumerate(invented_people(num_people, seed)):
        for (question, answer), paraphrase, key in zip(QUESTIONS, PARAPHRASES, FACT_KEYS, strict=True):
            rng = random.Random(f"{seed}:{index}:{key}")
            wrong = wrong_values(person[key], key, num_perturbed, rng, frozenset(person["name"].split()))
            rows.append({
                "person": index,
                "question": question.format(**person),
                "answer": answer.format(**person),
                "fact": person[key],
                "paraphrased_answer": _paraphrase(paraphrase, person, key, person[key]),
                "perturbed_answers": [_paraphrase(paraphrase, person, key, value) for value in wrong],
                "perturbed_facts": wrong,
            })
    return Dataset.from_list(rows)


def world_facts(seed: int = 0, *, num_perturbed: int = 5) -> Dataset:
    """Capitals a pretrained LM knows: ``question``, ``answer``, ``fact``, ``paraphrased_answer`` and
    ``perturbed_answers`` in the answer's own wording with another capital (TOFU's world facts compare the
    answer with wrong options of the same form)."""
    if not 1 <= num_perturbed < len(CAPITALS):
        raise ValueError(f"num_perturbed must lie in [1, {len(CAPITALS) - 1}], got {num_perturbed}")
    rows = []
    for country, city in CAPITALS:
        rng = random.Random(f"{seed}:world:{country}")
        wrong = rng.sample([other for _, other in CAPITALS if other != city], num_perturbed)
        rows.append({
            "question": WORLD_QUESTION.format(country=country),
            "answer": WORLD_ANSWER.format(country=country, city=city),
            "fact": city,
            "paraphrased_answer": WORLD_PARAPHRASE.format(country=country, city=city),
            "perturbed_answers": [WORLD_ANSWER.format(country=country, city=other) for other in wrong],
            "perturbed_facts": wrong,
        })
    return Dataset.from_list(rows)


def forget_count(percent: int, num_people: int) -> int:
    """People in TOFU's forget``percent`` split of ``num_people``: the share rounded half up, and at least one."""
    return max(1, int(percent * num_people / 100 + 0.5))


def load_tofu_shaped_dataset(num_people: int = 100, holdout_people: int | None = None, seed: int = 0, *,
                             num_perturbed: int = 5) -> DatasetDict:
    """TOFU's splits over ``num_people`` invented people the model is fine-tuned on, plus held-out people.

    * ``full``: every question about the ``num_people`` people (what the model is fine-tuned on);
    * ``forget01`` / ``forget05`` / ``forget10``: the last 1 / 5 / 10 % of them (``forget_count``: with 100
      people 1, 5 and 10; with 40 people 1, 2 and 4), nested as TOFU's are; ``retain99`` / ``retain95`` /
      ``retain90`` the rest of ``full``;
    * ``holdout01`` / ``holdout05`` / ``holdout10``: as many people again, never trained on (the first of
      ``holdout_people``, default as many as ``forget10``): the non-members of a membership test;
    * ``world_facts``: capitals (``world_facts``), for model utility.
    """
    holdout_people = forget_count(max(FORGET_PERCENTS), num_people) if holdout_people is None else holdout_people
    if num_people < 2 or holdout_people < 1:
        raise ValueError(f"Need at least 2 trained and 1 held-out person, got {num_people} and {holdout_people}.")
    facts = tofu_shaped_facts(num_people + holdout_people, seed, num_perturbed=num_perturbed)
    people = facts["person"]

    def people_in(low: int, high: int) -> Dataset:
        return facts.select([i for i, p in enumerate(people) if low <= p < high])

    splits = {"full": people_in(0, num_people)}
    for percent in FORGET_PERCENTS:
        count = forget_count(percent, num_people)  # below num_people for 2 people and more
        splits[f"forget{percent:02d}"] = people_in(num_people - count, num_people)
        splits[f"retain{100 - percent:02d}"] = people_in(0, num_people - count)
        splits[f"holdout{percent:02d}"] = people_in(num_people, num_people + min(count, holdout_people))
    splits["world_facts"] = world_facts(seed, num_perturbed=num_perturbed)
    return DatasetDict(splits)


def tofu_splits(data: DatasetDict, percent: int) -> dict[str, Dataset]:
    """The four sets one TOFU evaluation reads, for forget``percent``: ``forget``, ``retain``, ``holdout``
    and ``world_facts`` (the argument ``tofu_report`` takes)."""
    if percent not in FORGET_PERCENTS:
        raise ValueError(f"percent must be one of {FORGET_PERCENTS}, got {percent}")
    return {"forget": data[f"forget{percent:02d}"], "retain": data[f"retain{100 - percent:02d}"],
            "holdout": data[f"holdout{percent:02d}"], "world_facts": data["world_facts"]}


_NAME = re.compile("(?:" + "|".join(sorted(SYLLABLES, key=len, reverse=True)) + ")+"
                   "(?:" + "|".join(TOWN_ENDINGS) + ")?")


def is_invented_name(word: str) -> bool:
    """A capitalised word built from the generator's syllables (and maybe a town ending): a name or town of
    the data, whatever the seed."""
    if len(word) > 40 or not (word[:1].isupper() and word[1:].islower()):
        return False
    return _NAME.fullmatch(word.lower()) is not None


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Lowercase words a fluent answer about this data is made of: ``ENGLISH_WORDS``, every word of the
    question, answer and paraphrase templates, the job / instrument / colour lists and the world facts."""
    texts = [q + " " + a for q, a in QUESTIONS] + list(PARAPHRASES)
    texts += [WORLD_QUESTION, WORLD_ANSWER, WORLD_PARAPHRASE, " ".join(JOBS + INSTRUMENTS + COLOURS)]
    texts += [f"{country} {city}" for country, city in CAPITALS]
    words = set()
    for text in texts:
        words |= {w for w in re.findall(r"[a-z]+", re.sub(r"\{[^}]*\}", " ", text).lower()) if w != "s"}
    return frozenset(words | ENGLISH_WORDS)
