"""Warnings from the project's code, printed the command line's way: ``warning: <line>`` on stderr.

The API issues warnings through Python's :mod:`warnings` (e.g.
:class:`~..project.credentials.PlaintextCredentialWarning`), which prints them as
``file.py:123: Category: message`` plus a source line: two lines pointing into our code. For the
length of one command, :func:`warnings_as_lines` prints each of ours once as one line instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..core.errors import printable
from ..project.credentials import PlaintextCredentialWarning
from ..project.validation import ProjectNameWarning

#: The warning categories printed as ``warning:`` lines; others keep Python's own display.
CLI_CATEGORIES: tuple[type[Warning], ...] = (PlaintextCredentialWarning, ProjectNameWarning)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Inside: our warnings print as ``warning: <message>`` on stderr, each message once."""
    shown: set[str] = set()
    with warnings.catch_warnings():
        original = warnings.showwarning
        # "always": a project loaded twice in one command (load, then write) warns twice; the
        # set below keeps one line per message, also across CliRunner runs in one process.
        for category in CLI_CATEGORIES:
            warnings.simplefilter("always", category)

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
            if not issubclass(category, CLI_CATEGORIES):
                original(message, category, filename, lineno, file, line)
                return
            text = str(message)
            if text not in shown:
                shown.add(text)
                # The parts are shortened where the message is made; escaping is the last line.
                click.secho(f"warning: {printable(text)}", fg="yellow", err=True)

        warnings.showwarning = show
        yield
