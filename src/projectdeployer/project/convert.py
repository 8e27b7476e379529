"""The strict cattrs converter that turns project-file tables into model objects.

Strict means: no silent coercion (``port = "8000"`` is an error, not 8000), no unknown keys,
and every problem reported with its key path, all at once. :func:`structure` raises
:class:`~..core.errors.ConfigError` carrying one ``key.path: message`` line per problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from ..core.errors import ConfigError, join_path
from ..core.model import AutoScaling

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def describe(value: Any) -> str:
    """How a TOML value looks to the user: ``the string "abc"``, ``the integer 3``, ``a table``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the string "{shown}"'
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


class StrictTypeError(TypeError):
    """A value of the wrong TOML type; the message is already user-facing."""


def _strict(kind: type) -> Any:
    def hook(value: Any, _: type) -> Any:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise StrictTypeError(f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
        return value

    return hook


def _is_list(tp: Any) -> bool:
    return get_origin(tp) in (list, Sequence) or tp is list


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict or tp is dict


def _is_literal(tp: Any) -> bool:
    origin: object = get_origin(tp)  # typeshed's overloads know no special form as an origin
    return origin is Literal


def make_converter() -> cattrs.Converter:
    """A converter that forbids unknown keys and coerces nothing."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (str, int, float, bool):
        conv.register_structure_hook(kind, _strict(kind))

    def list_hook(value: Any, tp: Any) -> Any:
        if not isinstance(value, list):
            raise StrictTypeError(f"expected an array, got {describe(value)}")
        (item_type,) = get_args(tp) or (Any,)
        if item_type is Any:
            return list(value)
        return list(_structure_items(conv, dict(enumerate(value)), item_type).values())

    def dict_hook(value: Any, tp: Any) -> Any:
        if not isinstance(value, dict):
            raise StrictTypeError(f"expected a table, got {describe(value)}")
        args = get_args(tp)
        if not args or args[1] is Any:
            return dict(value)
        return _structure_items(conv, value, args[1])

    def literal_hook(value: Any, tp: Any) -> Any:
        allowed = get_args(tp)
        if value not in allowed or type(value) is not type(allowed[0]):
            shown = ", ".join(repr(a) for a in allowed)
            raise StrictTypeError(f"expected one of {shown}, got {describe(value)}")
        return value

    conv.register_structure_hook_func(_is_literal, literal_hook)

    def attrs_factory(cls: type) -> Any:
        generated: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)

        def hook(value: Any, tp: Any) -> Any:
            # cattrs would iterate a scalar and fail with "argument of type 'int' is not iterable".
            if not isinstance(value, dict):
                raise StrictTypeError(f"expected a table, got {describe(value)}")
            return generated(value, tp)

        return hook

    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    conv.register_structure_hook_func(_is_list, list_hook)
    conv.register_structure_hook_func(_is_dict, dict_hook)

    def auto_scaling_hook(value: Any, _: Any) -> bool | AutoScaling:
        if isinstance(value, bool):
            return value
        if isinstance(value, dict):
            return conv.structure(value, AutoScaling)
        raise StrictTypeError(f"expected true, false or a table, got {describe(value)}")

    # typing.Union and X | Y are two different keys to cattrs: both spellings are registered.
    conv.register_structure_hook(Union[bool, AutoScaling], auto_scaling_hook)  # noqa: UP007
    conv.register_structure_hook(bool | AutoScaling, auto_scaling_hook)
    return conv


def _structure_items(conv: cattrs.Converter, value: dict[Any, Any], item_type: Any) -> dict[Any, Any]:
    """Structure each value of ``value``; errors are grouped with the key (or index) they belong to."""
    out: dict[Any, Any] = {}
    errors: list[Exception] = []
    for key, item in value.items():
        try:
            out[key] = conv.structure(item, item_type)
        except Exception as exc:  # noqa: BLE001 - collected and re-raised as a group below
            exc.__notes__ = [*getattr(exc, "__notes__", []), _KeyNote(key)]
            errors.append(exc)
    if errors:
        raise _DictValidationError("invalid table entries", errors, dict)
    return out


class _KeyNote(str):
    """Marks which table key (or array index) an error belongs to."""

    key: str | int

    def __new__(cls, key: str | int) -> _KeyNote:
        obj = super().__new__(cls, f"key {key!r}")
        obj.key = key
        return obj


class _DictValidationError(cattrs.BaseValidationError):
    pass


converter = make_converter()


def problems_of(exc: BaseException, path: Sequence[str | int] = ()) -> list[str]:
    """Flatten a cattrs error group into ``key.path: message`` lines."""
    out: list[str] = []
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            out += problems_of(sub, [*path, note.name])
        for sub in without:
            out += problems_of(sub, path)
    elif isinstance(exc, IterableValidationError):
        with_index, unindexed = exc.group_exceptions()
        for sub, item in with_index:
            out += problems_of(sub, [*path, item.index])
        for sub in unindexed:
            out += problems_of(sub, path)
    elif isinstance(exc, _DictValidationError):
        for sub in exc.exceptions:
            keys = [n.key for n in getattr(sub, "__notes__", []) if isinstance(n, _KeyNote)]
            out += problems_of(sub, [*path, *keys[-1:]])
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl) if not a.metadata.get("internal")]
        for key in sorted(exc.extra_fields):
            hint = difflib.get_close_matches(key, known, n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            out.append(f"{join_path([*path, key])}: unknown key{suffix}")
    elif isinstance(exc, KeyError):
        # cattrs has already put the missing field's name on the path through its note.
        out.append(f"{join_path(path)}: required key missing")
    elif isinstance(exc, StrictTypeError):
        out.append(f"{join_path(path)}: {exc}")
    else:
        out.append(f"{join_path(path)}: {exc}")
    return out


def structure(data: Any, cls: type[T], *, path: Sequence[str | int] = ()) -> T:
    """Structure ``data`` into ``cls`` strictly; raise ConfigError with one line per problem."""
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ForbiddenExtraKeysError, StrictTypeError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(problems_of(exc, path)) from exc
