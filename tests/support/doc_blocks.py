"""The code blocks of README.md and docs/*.md, as the doc-block tests run them.

A block is found by its fence (indented fences inside list items included) and carries the
``<!-- doc-test: ... -->`` marker written on the line right before it (blank lines between are
allowed). A marker is space-separated ``key=value`` words (values may be quoted) and bare flags:

``skip reason="..."``
    the block is not run; the reason is printed by pytest (``-ra``) every run. Kept few.
``docker``
    the block runs in tests/docker/test_doc_blocks_deploy.py, where the suite has an engine.
``setup=NAME``
    (with ``docker``) the named setup of that module runs first, e.g. a deployed project
    (``myapp-prod``, shared by the blocks; ``myapp-staging``, made for one block).
``file=NAME``
    a Python block is written to NAME, so later blocks of the same markdown file can import it;
    a ``test_*.py`` NAME is run with pytest, as pytest would run it.
``same-as=PATH``
    a TOML block's tables must equal those tables of the repository file PATH.

How a block runs depends on its language: ``bash``/``sh``/``zsh``/``fish`` blocks and untagged
blocks whose every line is a command are shell commands; ``console`` blocks are the ``$ ``
lines; ``python`` blocks are scripts; ``toml``/``json`` blocks are parsed; ``text`` blocks are
prose. Any other language is an error, so a new kind of block cannot slip in unrun.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

ROOT = Path(__file__).resolve().parents[2]
#: The markdown files whose blocks are tested.
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

SHELLS = {"bash": "bash", "sh": "sh", "zsh": "zsh", "fish": "fish", "console": "bash"}
PARSED = {"toml", "json"}
PROSE = {"text"}
MARKER_KEYS = {"skip", "reason", "docker", "setup", "file", "same-as"}
#: The setups tests/docker/test_doc_blocks_deploy.py provides.
DOCKER_SETUPS = {"myapp-prod", "myapp-staging"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:(?P<body>.*?)-->\s*$")
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Command:
    """One shell command of a block, with the markdown line it starts on."""

    line: int
    text: str


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it is, its language, its code and its marker."""

    path: Path
    line: int
    lang: str
    code: str
    marker: dict[str, str] = field(default_factory=dict)
    marker_error: str | None = None

    @property
    def id(self) -> str:
        """``file:line`` of the opening fence, relative to the repository."""
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"

    @property
    def docker(self) -> bool:
        return "docker" in self.marker

    @property
    def skip_reason(self) -> str | None:
        return self.marker.get("reason", "(no reason given)") if "skip" in self.marker else None

    def commands(self) -> list[Command]:
        """The shell commands: ``$ `` lines of a console block, else every line that is not a
        comment; a trailing backslash continues a command on the next line."""
        out: list[Command] = []
        pending: tuple[int, str] | None = None
        # An untagged block written with prompts reads as a console block.
        prompts = self.lang == "console" or (self.lang == "" and any(line.startswith("$ ") for line in self.code.splitlines()))
        for number, raw in enumerate(self.code.splitlines(), start=self.line + 1):
            if pending is None:
                if prompts:
                    if not raw.startswith("$ "):
                        continue  # output shown in the docs
                    raw = raw[2:]
                if not raw.strip() or raw.lstrip().startswith("#"):
                    continue
                pending = (number, "")
            start, text = pending
            text += raw
            if raw.endswith("\\"):
                pending = (start, text + "\n")
                continue
            out.append(Command(start, text))
            pending = None
        if pending is not None:
            out.append(Command(*pending))
        return out


def _parse_marker(body: str) -> tuple[dict[str, str], str | None]:
    marker: dict[str, str] = {}
    try:
        words = shlex.split(body)
    except ValueError as exc:
        return {}, f"unreadable doc-test marker ({exc})"
    for word in words:
        key, _, value = word.partition("=")
        if key not in MARKER_KEYS:
            return {}, f"unknown doc-test marker key {key!r} (known: {', '.join(sorted(MARKER_KEYS))})"
        marker[key] = value
    if "skip" in marker and not marker.get("reason"):
        return {}, 'a doc-test skip needs reason="..."'
    return marker, None


def extract(path: Path) -> list[Block]:
    """Every fenced block of the markdown file ``path``, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not (lines[end].strip().startswith(fence[0] * len(fence)) and lines[end].strip().strip(fence[0]) == ""):
            # Content of an indented fence (inside a list item) loses the fence's indentation.
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        marker, error = _marker_before(lines, index)
        blocks.append(Block(path, index + 1, opening["lang"].lower(), "\n".join(body) + "\n", marker, error))
        index = end + 1
    return blocks


def _marker_before(lines: list[str], index: int) -> tuple[dict[str, str], str | None]:
    previous = index - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    found = _MARKER.match(lines[previous]) if previous >= 0 else None
    return _parse_marker(found["body"]) if found else ({}, None)


def all_blocks() -> list[Block]:
    return [block for path in DOC_FILES for block in extract(path)]


def is_commands(block: Block) -> bool:
    """An untagged block is shell when every command in it (every line that is not a comment,
    or the ``$ `` lines when it has prompts) starts with a program found on the test's PATH;
    anything else must be tagged or marked."""
    path = block_env(Path("/nonexistent"))["PATH"]
    commands = block.commands()  # with prompts, the lines without one are output
    return bool(commands) and all(_program(command.text) in _BUILTINS or shutil.which(_program(command.text), path=path) for command in commands)


#: Shell builtins a command line may start with.
_BUILTINS = {"cd", "export", "eval", "source", ".", "echo", "set", "unset", "test", "[", "true", "false"}


def _program(command: str) -> str:
    """The program a command line runs: its first word after ``NAME=value`` assignments."""
    words = [w for w in command.split() if not re.fullmatch(r"[A-Za-z_]\w*=\S*", w)]
    return words[0] if words else ""


def kind(block: Block) -> str:
    """``shell``, ``python``, ``parsed``, ``prose`` or ``unknown``."""
    if block.lang in SHELLS or (block.lang == "" and is_commands(block)):
        return "shell"
    if block.lang == "python":
        return "python"
    if block.lang in PARSED:
        return "parsed"
    if block.lang in PROSE:
        return "prose"
    return "unknown"


def block_env(home_root: Path) -> dict[str, str]:
    """The environment blocks run in: ``projectdeployer`` and ``python`` from this venv first on
    PATH, a temporary ``$PROJECTDEPLOYER_HOME`` and ``$HOME`` under ``home_root`` (never the
    user's), and none of the machine's PROJECTDEPLOYER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env["PROJECTDEPLOYER_HOME"] = str(home_root / "pd_home")
    env["HOME"] = str(home_root / "home")
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Outcome:
    """What running one block gave."""

    what: str
    returncode: int
    output: str

    def problem(self) -> str | None:
        """Why this outcome fails the block, or None when it passes."""
        if self.returncode != 0:
            return f"{self.what}: exit code {self.returncode}\n{self.output}"
        if TRACEBACK in self.output:
            return f"{self.what}: a traceback in its output\n{self.output}"
        return None


def prepare(block: Block, work: Path) -> dict[str, str]:
    """Make the block's directory and environment: ``work`` with the ``file=`` blocks that come
    before ``block`` in the same markdown file (the only state shared between blocks)."""
    (work / "pd_home").mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    for earlier in extract(block.path):
        if earlier.line >= block.line:
            break
        if "file" in earlier.marker:
            (work / earlier.marker["file"]).write_text(earlier.code, encoding="utf-8")
    return block_env(work)


def _shell_script(block: Block) -> str:
    """The block's commands as one script, each followed by a check that stops the script at
    the first command that fails and names its markdown line (fish has its own syntax)."""
    lines: list[str] = []
    for command in block.commands():
        lines.append(command.text)
        if block.lang == "fish":
            lines.append(f"set -l pd_rc $status; if test $pd_rc -ne 0; echo 'doc-test: line {command.line} exited '$pd_rc >&2; exit $pd_rc; end")
        else:
            lines.append(f'pd_rc=$?; if [ "$pd_rc" -ne 0 ]; then echo "doc-test: line {command.line} exited $pd_rc" >&2; exit "$pd_rc"; fi')
    return "\n".join(lines) + "\n"


def run_block(block: Block, work: Path, env: dict[str, str], *, timeout: float = 120.0) -> Outcome:
    """Run ``block`` in ``work``: a shell block as one script in one shell process, as a reader
    pastes it (state such as ``cd`` carries from one command to the next; every command must
    succeed), a Python block as a script with this venv's python."""
    if kind(block) == "shell":
        script = work / f"doc_block_{block.line}.{block.lang or 'sh'}"
        script.write_text(_shell_script(block), encoding="utf-8")
        argv = [SHELLS.get(block.lang, "bash"), script.name]
    elif kind(block) == "python":
        name = block.marker.get("file") or f"doc_block_{block.line}.py"
        (work / name).write_text(block.code, encoding="utf-8")
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name] if re.fullmatch(r"test_\w*\.py", name) else [sys.executable, name]
    else:
        raise ValueError(f"{block.id}: a {kind(block)} block is not run")
    proc = subprocess.run(argv, cwd=work, env=env, text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Outcome(block.id, proc.returncode, proc.stdout + proc.stderr)


def parse(block: Block) -> Any:
    """The data of a ``toml``/``json`` block (raises on a syntax error)."""
    if block.lang == "json":
        return json.loads(block.code)
    return tomlkit.parse(block.code).unwrap()


def tables(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The leaf tables (tables holding no table) of parsed TOML, by dotted path."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            out.update(tables(value, (*prefix, key)))
        elif isinstance(value, dict):
            out[(*prefix, key)] = value
    return out
