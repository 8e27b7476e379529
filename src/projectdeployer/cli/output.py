"""Printing for the CLI: errors as lines, data as tables or JSON."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

import click

from ..core.errors import LINE_SHOWN, ProjectDeployerError, printable


def error_lines(exc: ProjectDeployerError) -> list[str]:
    """``error: <line>`` for each problem of ``exc``, printable and shortened: an error echoes
    what the user typed, and that must never reach the terminal as control sequences."""
    return [f"error: {printable(line, LINE_SHOWN)}" for line in exc.lines()]


def print_json(data: Any) -> None:
    """Stable, readable JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, err: bool = False) -> None:
    """A rich table on stdout, or on stderr with ``err`` (beside JSON on stdout); rich is
    imported only by commands that print tables."""
    from rich.console import Console  # noqa: PLC0415 - deferred: rich (start-up: 0.16 s; cli/__init__ imports this module for --help, which prints no table)
    from rich.table import Table  # noqa: PLC0415 - deferred: rich (start-up, as above)

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    # Piped output has no terminal width; take a wide one rather than truncating cells.
    Console(width=shutil.get_terminal_size((160, 24)).columns, stderr=err).print(table)
