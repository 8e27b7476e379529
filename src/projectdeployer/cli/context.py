"""What a plugin's command needs from the running CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import pluggy

from ..plugins import get_registry, load_plugins

if TYPE_CHECKING:
    from ..core.registry import Registry


def current_manager(ctx: click.Context | None = None) -> pluggy.PluginManager:
    """The plugin manager the CLI was built with (the global one outside the CLI)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().obj:
        manager: pluggy.PluginManager = ctx.find_root().obj["manager"]
        return manager
    return load_plugins()


def current_registry(ctx: click.Context | None = None) -> Registry:
    """The service types and providers of the running CLI's plugins."""
    return get_registry(current_manager(ctx))
