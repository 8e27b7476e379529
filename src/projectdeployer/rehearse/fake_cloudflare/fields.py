"""Reading a request body's fields with the checks Cloudflare makes: a field of the wrong JSON
type is a 422, as it is for every route of the fake. An absent field and ``null`` both give
the caller's ``default``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import wrong_type


def text(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a string."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise wrong_type(name, "a string")
    return value


def integer(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as an int (a float without a fraction is accepted, as JSON allows)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise wrong_type(name, "an integer")
    return int(value)


def number(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a float."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(name, "a number")
    return float(value)


def boolean(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a bool."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise wrong_type(name, "true or false")
    return value


def strings(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a list of strings."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise wrong_type(name, "a list of strings")
    return list(value)


def string_lists(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a map of lists of strings (``region_pools``, a monitor's ``header``)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, dict) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in value.values()):
        raise wrong_type(name, "an object of lists of strings")
    return {str(k): list(v) for k, v in value.items()}


def objects(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as a list of objects (a pool's ``origins``)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise wrong_type(name, "a list of objects")
    return [dict(v) for v in value]


def mapping(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``body[name]`` as an object (``adaptive_routing``, ``origin_steering``)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise wrong_type(name, "an object")
    return dict(value)
