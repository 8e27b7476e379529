"""The command line as the core describes it to plugins, without naming the CLI library.

The ``register_commands`` hook hands plugins the root group of ``projectdeployer``, a
``click.Group``. The core imports no vendor library (the ``core-knows-no-vendor`` contract), so
the hook's parameter is this structural type: a plugin annotates its own implementation
``cli: click.Group`` and calls click's API on it.
"""

from __future__ import annotations

from typing import Never, Protocol


class CommandGroup(Protocol):
    """The root command group (a ``click.Group``) plugins add their commands to."""

    @property
    def name(self) -> str | None:
        """The group's name (``projectdeployer``)."""
        ...

    def add_command(self, cmd: Never, name: str | None = None) -> None:
        """Add a command (a ``click.Command``). Its type is the CLI library's, which the core
        does not name: only a plugin that imports click calls this."""
        ...
