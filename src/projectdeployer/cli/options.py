"""Click options generated from a service type's spec class, so plugin types get CLI options free.

Scalars become typed options, lists repeatable options, ``env_vars`` ``--env-var KEY=VALUE``,
``volumes`` ``--volume HOST:CONTAINER[:ro]``, and nested tables (``auto_scaling``,
``backup_config``, ``dockerfile_content``) take a TOML value: ``--backup-config
'{schedule = "0 */6 * * *", retention_days = 14}'``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import click
import tomlkit
from tomlkit.exceptions import TOMLKitError

from ..core.model import spec_fields

#: Options whose CLI name differs from the field (singular for repeatable KEY=VALUE options).
_RENAMED = {
    "env_vars": "env-var",
    "volumes": "volume",
    "depends_on": "depends-on",
    "requirements_files": "requirements-file",
    "system_packages": "system-package",
    "build_packages": "build-package",
}


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


#: What a TOML value looks like, for the error that refuses one.
_TOML_EXAMPLES = 'e.g. true, 8000, "text", ["a", "b"] or \'{key = 1}\''


def _toml_value(text: str, param: str) -> Any:
    """The plain Python value of one TOML value given to option ``param``.

    tomlkit hands back bare booleans as Python ``bool`` (which cannot be subclassed) but every
    other scalar and every container as an item that must be unwrapped, so both are accepted.
    Anything that is not exactly one value (a syntax error, a duplicate key, or more lines
    smuggling further keys in) is a one-line usage error naming the flag; the value is echoed
    shortened and escaped, since it is whatever the user typed.
    """
    try:
        document = tomlkit.parse(f"value = {text}")
    except (TOMLKitError, ValueError, RecursionError):
        document = None
    if document is None or list(document.keys()) != ["value"]:
        shown = repr(text if len(text) <= 60 else text[:60] + "...")
        raise click.BadParameter(f"not one TOML value: {shown} ({_TOML_EXAMPLES})", param_hint=f"'{param}'")
    value = document["value"]
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _key_values(pairs: tuple[str, ...], param: str, sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, found, value = pair.partition(sep)
        if not found or not key:
            raise click.BadParameter(f"expected KEY{sep}VALUE, got '{pair}'", param_hint=param)
        out[key] = value
    return out


def _volumes(pairs: tuple[str, ...], param: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        host, found, target = pair.partition(":")
        if not found or not host or not target:
            raise click.BadParameter(f"expected HOST_PATH:CONTAINER_PATH[:ro|:rw], got '{pair}'", param_hint=param)
        out[host] = target
    return out


def _split_list(values: tuple[str, ...]) -> list[str]:
    # Accept both --depends-on a --depends-on b and --depends-on a,b.
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


Converter = Callable[[Any], Any]


def spec_options(spec_class: type) -> tuple[list[click.Option], dict[str, tuple[str, Converter]]]:
    """Click options for every user field of ``spec_class``, and how to turn each value back
    into the API's keyword argument (``dest -> (field name, converter)``)."""
    hints = typing.get_type_hints(spec_class)
    options: list[click.Option] = []
    back: dict[str, tuple[str, Converter]] = {}
    for field in spec_fields(spec_class):
        tp = _unwrap_optional(hints[field.name])
        flag = "--" + _RENAMED.get(field.name, field.name.replace("_", "-"))
        dest = field.name
        help_text = field.metadata.get("help") or _default_help(field)
        origin = get_origin(tp)
        if field.name == "env_vars":
            options.append(
                click.Option(
                    [flag, dest], multiple=True, metavar="KEY=VALUE", help="Environment variable (repeatable); VALUE 'auto' or 'auto:SERVICE.PIECE' (e.g. auto:postgres.port) is resolved at deploy."
                )
            )
            back[dest] = (field.name, partial(_env_vars_back, flag))
        elif field.name == "volumes":
            options.append(click.Option([flag, dest], multiple=True, metavar="HOST:CONTAINER[:ro]", help="Volume mount (repeatable)."))
            back[dest] = (field.name, partial(_volumes_back, flag))
        elif origin is list:
            options.append(click.Option([flag, dest], multiple=True, help=help_text + " (repeatable, or comma-separated)."))
            back[dest] = (field.name, lambda v: _split_list(v) or None)
        elif tp is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", dest], default=None, help=help_text))
            back[dest] = (field.name, lambda v: v)
        elif tp in (int, str, float):
            options.append(click.Option([flag, dest], type=tp, default=None, help=help_text))
            back[dest] = (field.name, lambda v: v)
        elif origin is Literal:
            options.append(click.Option([flag, dest], type=click.Choice([str(a) for a in get_args(tp)]), default=None, help=help_text))
            back[dest] = (field.name, lambda v: v)
        else:  # tables and unions (auto_scaling: true/false/table): a TOML value
            options.append(click.Option([flag, dest], default=None, metavar="TOML", help=help_text + " (a TOML value, e.g. true or '{key = 1}')."))
            back[dest] = (field.name, partial(_toml_back, flag))
    return options, back


def _env_vars_back(flag: str, values: tuple[str, ...]) -> dict[str, str] | None:
    return _key_values(values, flag, "=") if values else None


def _volumes_back(flag: str, values: tuple[str, ...]) -> dict[str, str] | None:
    return _volumes(values, flag) if values else None


def _toml_back(flag: str, value: str | None) -> Any:
    return _toml_value(value, flag) if value is not None else None


def _default_help(field: attrs.Attribute[Any]) -> str:
    name = field.name.replace("_", " ")
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return name.capitalize()
    if default is None or default == "":
        return name.capitalize()
    return f"{name.capitalize()} [default: {default}]"


def api_kwargs(values: dict[str, Any], back: dict[str, tuple[str, Converter]]) -> dict[str, Any]:
    """The keyword arguments for ``ProjectDeployer.add`` from parsed option values (unset ones dropped)."""
    out: dict[str, Any] = {}
    for dest, raw in values.items():
        if dest not in back:
            continue
        name, convert = back[dest]
        value = convert(raw)
        if value is not None:
            out[name] = value
    return out
