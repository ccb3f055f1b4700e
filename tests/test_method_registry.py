"""The method registry refuses what the rest of the library could not handle, and the classes readers land on
first (every method, its config, ``UnlearningArguments``) say what they are and what their defaults are."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

import pytest
import torch
from transformers import TrainingArguments

import hf_unlearn.methods as registry
from hf_unlearn.methods import METHODS, MethodConfig, UnlearningMethod, method_prefix, register_method
from hf_unlearn.training.arguments import UnlearningArguments


def _method(name: str, config: type | None = None) -> type[UnlearningMethod]:
    """A minimal method class called ``name`` with ``config`` as its hyperparameters."""

    class Candidate(UnlearningMethod):
        def compute_loss(self, context, model, batch):
            return torch.zeros(())

    Candidate.name = name
    if config is not None:
        Candidate.config_class = config
    return Candidate


@dataclasses.dataclass
class _PrefixedConfig(MethodConfig):
    myorg_strength: float = 1.0


@dataclasses.dataclass
class _UnprefixedConfig(MethodConfig):
    myorg_strength: float = 1.0
    learning_rate: float = 0.1  # would collide with TrainingArguments on the command line


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(METHODS))
    return registry


def test_a_well_formed_method_registers_and_can_be_run_by_name(fresh_registry):
    method = register_method(_method("myorg_fancy", _PrefixedConfig))
    assert fresh_registry.METHODS["myorg_fancy"] is method
    assert fresh_registry.get_method("myorg_fancy") is method
    assert register_method(method) is method  # registering the same class again changes nothing
    assert "myorg_fancy" not in METHODS  # the library's own registry was left alone


@pytest.mark.parametrize(
    "method, message",
    [
        (_method("MyMethod"), "lowercase letters and digits"),
        (_method("my-method"), "lowercase letters and digits"),
        (_method("my__method"), "lowercase letters and digits"),
        (_method(""), "lowercase letters and digits"),
        (_method("auto"), "taken by the default path"),
        (_method("pgu"), "taken by PGU"),
        (_method("myorg_fancy", _UnprefixedConfig), "learning_rate of _UnprefixedConfig must start with 'myorg_'"),
        (_method("other", _PrefixedConfig), "myorg_strength of _PrefixedConfig must start with 'other_'"),
    ],
)
def test_a_bad_registration_is_refused_and_registers_nothing(fresh_registry, method, message):
    before = dict(fresh_registry.METHODS)
    with pytest.raises(ValueError, match=message):
        register_method(method)
    assert fresh_registry.METHODS == before


def test_what_is_not_a_method_or_a_config_dataclass_is_refused(fresh_registry):
    with pytest.raises(TypeError, match="UnlearningMethod subclass"):
        register_method(object)

    class PlainConfig:
        pass

    with pytest.raises(TypeError, match="MethodConfig dataclass"):
        register_method(_method("plain", PlainConfig))


def test_every_registered_method_follows_the_prefix_rule_and_never_collides_with_the_run_arguments():
    taken = {f.name for f in dataclasses.fields(UnlearningArguments)} | {f.name for f in dataclasses.fields(
        TrainingArguments)}
    for name, method in METHODS.items():
        fields = {f.name for f in dataclasses.fields(method.config_class)}
        assert all(f.startswith(method_prefix(name)) for f in fields), name
        assert not fields & taken, (name, fields & taken)


def _documented(config: type) -> set[str]:
    """The names an Args section lists, in this config's docstring or a MethodConfig base's."""
    names = set()
    for cls in config.__mro__:
        if not (isinstance(cls, type) and issubclass(cls, MethodConfig)) or cls is MethodConfig:
            continue
        doc = inspect.getdoc(cls) or ""
        if "Args:" not in doc:
            continue
        args = doc.split("Args:", 1)[1]
        for line in args.splitlines():
            match = re.match(r"^    ([a-z_, ]+?)(?: \(`|:)", line)
            if match:
                names |= {n.strip() for n in match.group(1).split(",")}
    return names


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_config_documents_each_hyperparameter_in_an_args_section(name):
    config = METHODS[name].config_class
    doc = inspect.getdoc(config) or ""
    assert "Args:" in doc and f'method="{name}"' in doc, name
    fields = {f.name for f in dataclasses.fields(config)}
    assert fields <= _documented(config), (name, fields - _documented(config))
    stated = dict(re.findall(r"^    ([a-z_]+) \(`[^`]+`, defaults to `([^`]+)`\):", doc, flags=re.MULTILINE))
    for field in dataclasses.fields(config):  # each default as the docstring states it
        if field.name in stated:
            assert ast.literal_eval(stated[field.name]) == field.default, (name, field.name, stated[field.name])


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_class_says_where_its_protection_lives(name):
    method = METHODS[name]
    doc = method.__dict__.get("__doc__") or ""
    assert doc.strip(), f"{method.__name__} has no docstring of its own"
    if method.uses_projection:
        assert "protection/space.py" in doc, name
    else:
        assert "no projection" in doc or "no protection" in doc, name


def test_unlearning_arguments_document_every_own_parameter_and_every_changed_default():
    doc = inspect.getdoc(UnlearningArguments) or ""
    stated = dict(re.findall(r"^    ([a-z_]+) \(`[^)]*, defaults to `([^`]+)`\):", doc, flags=re.MULTILINE))
    inherited = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    for field in dataclasses.fields(UnlearningArguments):
        own = field.name not in inherited
        if own or field.default != inherited[field.name]:
            assert field.name in stated, f"UnlearningArguments' docstring does not list {field.name}"
            assert ast.literal_eval(stated[field.name]) == field.default, (field.name, stated[field.name])
    assert "> Parameters whose defaults differ from ``TrainingArguments``" in doc
