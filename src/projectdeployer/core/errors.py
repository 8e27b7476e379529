"""The error taxonomy: an expected error is one readable line, a bug is a traceback.

Every error a user can cause (a bad project file, an unknown plugin, a missing project) derives
from :class:`ProjectDeployerError`; the CLI prints those as one red line per problem and exits
with :attr:`ProjectDeployerError.exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
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
        """``file: key.path: message`` for each problem (the file is omitted when unknown).

        Each problem stays one printable line whatever values it echoes (see :func:`printable`).
        """
        prefix = f"{printable(self.source, KEY_SHOWN * 2)}: " if self.source else ""
        return [f"{prefix}{printable(p, LINE_SHOWN)}" for p in self.problems]

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


class DeployFailed(ProjectDeployerError):
    """A service could not be deployed; the old version keeps serving. Says why."""


def join_path(parts: Sequence[str | int]) -> str:
    """Render a key path the way a user would write it: ``services.api.env_vars.DEBUG``, ``x[0]``.

    Each key is printable and shortened (a key is user input: a 1 MiB table name or an escape
    sequence must not become the error line).
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(str(part), KEY_SHOWN)
    return out


#: How many characters of a value, a key and a whole error line are shown.
VALUE_SHOWN = 60
KEY_SHOWN = 60
LINE_SHOWN = 300

# Characters that move the cursor, change a terminal's title or colours, reorder text (bidi
# overrides) or hide it (zero-width): C0/C1 controls, DEL, format characters, line separators.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe to print on one terminal line: control and format characters escaped
    (``\\x1b``, ``\\n``, ``\\u202e``), and, past ``limit`` characters, its middle replaced by
    ``...(N chars)...`` so both ends stay readable."""
    if limit is not None and len(text) > limit:
        # Shortened before escaping, so an escape sequence is never cut in half.
        keep = max(limit - 20, 8)
        head, tail = text[: keep * 2 // 3], text[len(text) - keep // 3 :]
        return f"{_UNPRINTABLE.sub(_escape, head)}...({len(text)} chars)...{_UNPRINTABLE.sub(_escape, tail)}"
    return _UNPRINTABLE.sub(_escape, text)


def shown(value: object, limit: int = VALUE_SHOWN) -> str:
    """A user's value quoted for an error message: ``'3.11\\nRUN curl'``, escaped and shortened."""
    return f"'{printable(str(value), limit)}'"
