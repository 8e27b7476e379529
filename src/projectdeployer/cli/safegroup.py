"""The root command group, whose usage errors print what the user typed escaped and shortened.

click's own errors ("No such command 'X'", "Invalid value for '--port': 'X'") echo the
argument as given: an escape sequence in it would reach the terminal, a 1 MiB value would become
a 1 MiB line. Every click error raised while parsing or running a command is shown as one
``error: ...`` line through :func:`~projectdeployer.core.errors.printable`, with click's own
exit code (2 for usage errors). A group given no command is the exception: click shows its help
(our own text, typed by nobody), as it would without this group.
"""

from __future__ import annotations

from typing import IO, Any

import click
from click.exceptions import NoArgsIsHelpError

from ..core.errors import LINE_SHOWN, printable


class PrintableClickError(click.ClickException):
    """A click error whose display is made printable line by line."""

    def __init__(self, original: click.ClickException) -> None:
        super().__init__(original.message)
        self.original = original
        # click's stubs declare exit_code a ClassVar; click reads it from the instance it catches.
        self.exit_code = original.exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        # One line, as every other error of ours: click's own form is four (usage, a hint, a
        # blank line, the error); the command's --help is named instead.
        line = f"error: {self.original.format_message()}"
        ctx = getattr(self.original, "ctx", None)
        if isinstance(self.original, click.UsageError) and ctx is not None:
            line += f" (see '{ctx.command_path} --help')"
        click.secho(printable(line, LINE_SHOWN), file=file, err=file is None, fg="red")


class SafeGroup(click.Group):
    """A group that hands every click error of its subtree to :class:`PrintableClickError`."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.ClickException as exc:
            raise PrintableClickError(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PrintableClickError, NoArgsIsHelpError):
            raise
        except click.ClickException as exc:
            raise PrintableClickError(exc) from exc
