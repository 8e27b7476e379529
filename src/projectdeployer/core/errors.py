"""The error taxonomy: an expected error is one readable line, a bug is a traceback.

Every error a user can cause (a bad project file, an unknown plugin, a missing project) derives
from :class:`ProjectDeployerError`; the CLI prints those as one red line per problem and exits
with :attr:`ProjectDeployerError.exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ProjectDeployerError(Exception):
    """Base of every error caused by input, configuration or the environment, not by a bug."""

    exit_code: int = 1
    #: The same message for the command line, when the Python one names Python arguments
    #: (``overwrite=True``) that the CLI spells as flags or commands (``--overwrite``).
    cli_message: str | None = None

    def lines(self) -> list[str]:
        """The message, one problem per line."""
        return str(self).splitlines() or [type(self).__name__]

    def cli_lines(self) -> list[str]:
        """The lines the command line prints: :attr:`cli_message` when set, else :meth:`lines`."""
        return self.cli_message.splitlines() if self.cli_message else self.lines()


class ConfigError(ProjectDeployerError):
    """A project file (or arguments meant for it) is invalid. Carries one line per problem.

    Exit code 2, as for any usage error. Raised before anything is written.
    """

    exit_code = 2

    def __init__(self, problems: Iterable[str], *, source: str | None = None) -> None:
        self.problems: list[str] = list(problems)
        self.source = source
        super().__init__("\n".join(self.format_lines()))

    def format_lines(self) -> list[str]:
        """``file: key.path: message`` for each problem (the file is omitted when unknown)."""
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{p}" for p in self.problems]

    def lines(self) -> list[str]:
        return self.format_lines()


class ProjectNotFound(ProjectDeployerError):
    """No project file exists for the name or path given."""

    exit_code = 2


class ProjectExists(ProjectDeployerError):
    """``create`` would overwrite a project that already has services."""

    exit_code = 2


class PluginError(ProjectDeployerError):
    """A plugin failed to load or registered something invalid; names the plugin."""


class SecretError(ProjectDeployerError):
    """A secret reference cannot be resolved or stored."""


def join_path(parts: Sequence[str | int]) -> str:
    """Render a key path the way a user would write it: ``services.api.env_vars.DEBUG``, ``x[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
