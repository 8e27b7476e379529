"""``projectdeployer plugins``: what is loaded and which hooks each plugin implements."""

from __future__ import annotations

import difflib

import click
import pluggy

from ..core.errors import ConfigError, shown
from ..plugins import get_plugins, get_registry
from .output import print_json, print_table


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the ``plugins`` command to ``cli``."""

    @cli.command()
    @click.option("--hook", "hook", default=None, help="Only plugins implementing HOOK.")
    @click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
    def plugins(hook: str | None, as_json: bool) -> None:
        """List the loaded plugins (built-in and installed) with their hooks."""
        if hook is not None:
            _check_hook(manager, hook)
        found = get_plugins(manager)
        if hook:
            found = [p for p in found if hook in p["hooks"]]
        registry = get_registry(manager)
        for plugin in found:
            plugin["service_types"] = sorted(n for n, t in registry.service_types.items() if t.plugin == plugin["name"])
            plugin["providers"] = sorted(n for n, p in registry.providers.items() if p.plugin == plugin["name"])
        if as_json:
            print_json(found)
            return
        rows = [
            (
                p["name"],
                "built-in" if p["builtin"] else f"{p['distribution'] or '?'} {p['version'] or ''}".strip(),
                ", ".join(p["service_types"] + p["providers"]),
                ", ".join(p["hooks"]),
            )
            for p in found
        ]
        print_table("plugins", ["plugin", "source", "provides", "hooks"], rows)


def _check_hook(manager: pluggy.PluginManager, hook: str) -> None:
    """Refuse a hook name no plugin can implement (a typo would list nothing and exit 0)."""
    known = sorted(name for name in vars(manager.hook) if not name.startswith("_"))
    if hook not in known:
        # The known hooks are ~30 names: too long for one line; the closest ones are what helps.
        close = difflib.get_close_matches(hook, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(known)} hooks, listed in docs/plugins.md"
        raise ConfigError([f"--hook: unknown hook {shown(hook)} ({hint})"])
