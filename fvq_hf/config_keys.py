"""Config keys read off a class's `__init__`: their names and defaults (`init_keywords`) and their types
(`check_config_types`), so that the class is the one place that knows them.

A value of the wrong type in a config (`"num_vq_embeddings": "many"`) is refused where the config is read, with
the key named, instead of failing somewhere inside the model with a `TypeError`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence


def init_keywords(cls: type, exclude: tuple[str, ...] = ()) -> dict:
    """The keyword parameters of `cls.__init__` after its first two (bridges and quantizer types without a table:
    codebook_size, code_dim; table quantizer types: the table and the bridge), with their defaults, less `exclude`:
    the config keys that class owns."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[3:]
    return {p.name: p.default for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in exclude}


def fits(value, hint) -> bool:
    """Whether a JSON-like `value` is of the annotated type `hint` (ints pass for floats, bools for nothing else)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is inspect.Parameter.empty:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, list | tuple) and all(fits(v, items[0]) for v in value if items)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, Mapping)
    return not isinstance(hint, type) or isinstance(value, hint)


def describe(hint) -> str:
    text = str(hint).replace("typing.", "").replace("collections.abc.", "")
    return {"<class 'int'>": "an integer", "<class 'float'>": "a number", "<class 'bool'>": "true or false",
            "<class 'str'>": "a string"}.get(text, text)


def check_config_types(function, values: Mapping, where: str) -> None:
    """Raise a ValueError naming the first key of `values` whose value does not fit `function`'s annotation
    (`where` says whose config it is, e.g. "FVQModel config"). Keys the function does not take are left alone."""
    hints = typing.get_type_hints(inspect.unwrap(function))
    for key, value in values.items():
        if key in hints and not fits(value, hints[key]):
            raise ValueError(f"{where}: {key!r} must be {describe(hints[key])}, got {value!r} "
                             f"({type(value).__name__}).")
