"""Reading ``params.yaml`` into typed dataclasses: layered merges, type checks, command-line overrides.

A parameter file is plain YAML; ``config.py`` says which dataclass each section fills. Here is the
machinery, written once: ``deep_merge`` layers a profile and overrides over the shared sections and
rejects a key that does not exist (a typo guard), ``build_dataclass`` fills a dataclass with type
checks that name the parameter, ``parse_overrides`` reads ``KEY=VALUE`` assignments.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any

import yaml


def deep_merge(base: dict, override: dict, where: str = "") -> dict:
    """``base`` updated by ``override`` recursively; a key absent from ``base`` is an error (typo guard)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise ValueError(f"unknown parameter {where}{key!r}; known here: {sorted(out)}")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = deep_merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def build_dataclass(cls: type, values: dict, section: str) -> Any:
    """A dataclass from a dict, with type checks that name the parameter (YAML lists become tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} in {section!r}; allowed: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = check_type(value, hints[name], f"{section}.{name}")
    return cls(**kwargs)


def check_type(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # the first type the value fits; the last one's error otherwise
            try:
                return check_type(value, option, where)
            except ValueError:
                continue
        return check_type(value, options[-1], where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}")
        inner = (
            [check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
        )
        return tuple(inner) if origin is tuple else inner
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and value is True)
    ):
        raise ValueError(f"{where} must be of type {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def dataclass_defaults(cls: type) -> dict:
    """The fields of dataclass ``cls`` that have a default, with it."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def parse_overrides(assignments: list[str]) -> dict:
    """``["train.steps=100", "model.dim=64"]`` -> ``{"train": {"steps": 100}, "model": {"dim": 64}}``.

    Values are read as YAML (numbers, booleans, lists); keys are dotted paths into params.yaml.
    """
    out: dict = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. train.steps=100")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} was already given a value")
        node[leaf] = yaml.safe_load(value)
    return out
