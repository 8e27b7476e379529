"""Every shell and Python block of README.md and docs/*.md runs, verbatim, as a reader runs it.

Each block is one test, ``file:line`` of its opening fence, run in a fresh temporary directory
with its own ``$PROJECTDEPLOYER_HOME`` and ``$HOME`` (never the user's), ``projectdeployer`` and
``python`` from this venv first on PATH:

* shell blocks (``bash``, ``sh``, ``zsh``, ``fish``, the ``$ `` lines of ``console``, untagged
  blocks made only of commands): the block's commands as one script in that shell, as a reader
  pastes them (``cd`` and variables carry over); every command must exit 0, the first that does
  not stops the block and is named by its line, and nothing may print a traceback. A
  ``zsh``/``fish`` block is skipped, by name, where that shell is not installed;
* ``python`` blocks: run as a script with this venv's python; exit 0, no traceback;
* chaining: blocks share nothing but files. A block marked ``<!-- doc-test: file=NAME -->`` is
  written to NAME in the directory of every *later* block of the same markdown file, so a later
  block can import it (a ``test_*.py`` NAME is itself run with pytest);
* ``toml``/``json`` blocks are parsed (``same-as=PATH``: their tables equal that file's);
* blocks marked ``docker`` run in tests/docker/test_doc_blocks_deploy.py instead;
* blocks marked ``skip reason="..."`` are reported as skipped with that reason, every run.

A block of any other language, an untagged block that is not only commands, or a marker with an
unknown key fails :func:`test_every_block_is_runnable_or_marked`: a new block is either run or
explicitly set aside. The markers are described in tests/support/doc_blocks.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomlkit

from tests.support.doc_blocks import DOCKER_SETUPS, ROOT, Block, all_blocks, extract, kind, parse, prepare, run_block, tables

pytestmark = pytest.mark.unit

BLOCKS = all_blocks()
#: Blocks set aside by a skip marker stay few: raising this is a decision, not a habit.
MAX_SKIPS = 4


def _runnable_here(block: Block) -> bool:
    return kind(block) in ("shell", "python") and not block.docker


@pytest.mark.parametrize("block", [b for b in BLOCKS if _runnable_here(b)], ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    if block.skip_reason:
        pytest.skip(f"doc-test skip {block.id}: {block.skip_reason}")
    if block.lang in ("zsh", "fish") and shutil.which(block.lang) is None:
        pytest.skip(f"{block.id}: {block.lang} is not installed on this machine")
    env = prepare(block, tmp_path)
    outcome = run_block(block, tmp_path, env, timeout=60)
    assert outcome.problem() is None, outcome.problem()


@pytest.mark.parametrize("block", [b for b in BLOCKS if kind(b) == "parsed"], ids=lambda b: b.id)
def test_data_block_parses(block: Block) -> None:
    data = parse(block)
    if "same-as" in block.marker:
        source = ROOT / block.marker["same-as"]
        theirs = tables(tomlkit.parse(source.read_text(encoding="utf-8")).unwrap())
        for path, table in tables(data).items():
            assert theirs.get(path) == table, f"{block.id}: [{'.'.join(path)}] differs from {block.marker['same-as']}"


def test_every_block_is_runnable_or_marked() -> None:
    problems = []
    for block in BLOCKS:
        if block.marker_error:
            problems.append(f"{block.id}: {block.marker_error}")
        elif kind(block) == "unknown" and not block.skip_reason:
            what = "an untagged block that is not only commands" if block.lang == "" else f"a ```{block.lang} block"
            problems.append(f'{block.id}: {what}: tag it (bash, python, toml, text, ...) or mark it <!-- doc-test: skip reason="..." -->')
        elif block.docker and block.marker.get("setup", "") not in DOCKER_SETUPS | {""}:
            problems.append(f"{block.id}: unknown docker setup {block.marker['setup']!r} (known: {sorted(DOCKER_SETUPS)})")
        elif "file" in block.marker and kind(block) != "python":
            problems.append(f"{block.id}: file= is for python blocks")
    assert not problems, "\n".join(problems)


def test_skips_are_few_and_named() -> None:
    skipped = [f"{b.id}: {b.skip_reason}" for b in BLOCKS if b.skip_reason]
    assert len(skipped) <= MAX_SKIPS, "too many doc blocks are skipped:\n" + "\n".join(skipped)


def test_the_readme_cli_example_is_run() -> None:
    """The block that once crashed (issue 11) is among the blocks run here, not set aside."""
    (block,) = [b for b in BLOCKS if b.path.name == "README.md" and "--auto-scaling true" in b.code]
    assert _runnable_here(block) and not block.skip_reason


def test_extraction_markers_and_commands(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        'Intro\n\n<!-- doc-test: skip reason="needs the network" -->\n\n```bash\ncurl https://example.com\n```\n\n'
        "1. In a list:\n\n   ```console\n   $ echo one \\\n       two\n   one two\n   $ true  # comment\n   ```\n\n"
        "<!-- doc-test: sleep=1 -->\n```python\nprint(1)\n```\n\n```\nnot a command here\n```\n\n```yaml\na: 1\n```\n"
    )
    skipped, console, bad_marker, untagged, yaml = extract(doc)
    assert (skipped.line, skipped.skip_reason, skipped.code) == (5, "needs the network", "curl https://example.com\n")
    assert [(c.line, c.text) for c in console.commands()] == [(12, "echo one \\\n    two"), (15, "true  # comment")]
    assert bad_marker.marker_error and "sleep" in bad_marker.marker_error
    assert (kind(untagged), kind(yaml), kind(console)) == ("unknown", "unknown", "shell")


def test_a_failing_command_stops_its_block_and_is_named(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text('```bash\ncd /\ntest "$PWD" = /\nfalse  # fails\necho never\n```\n')
    (block,) = extract(doc)
    outcome = run_block(block, tmp_path, prepare(block, tmp_path))
    problem = outcome.problem()
    assert problem is not None and "doc-test: line 4 exited 1" in problem and "never" not in outcome.output


def test_an_untagged_block_of_commands_runs_as_shell(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```\nPROJECTDEPLOYER_TRACE_PLUGINS=1 projectdeployer --version\ncd /tmp\n```\n\n```\n$ projectdeployer --help\nUsage: ...\n```\n")
    plain, prompted = extract(doc)
    assert kind(plain) == kind(prompted) == "shell"
    assert [c.text for c in prompted.commands()] == ["projectdeployer --help"]
