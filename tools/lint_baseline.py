#!/usr/bin/env python3
"""Regenerate the lint ratchet in pyproject.toml from the linters' own output.

While issue 13 restructures the package, ``make lint`` has to pass on every commit, so each linter
carries a baseline of today's findings, written between marker lines in pyproject.toml::

    # >>> lint-baseline NAME (...)
    ...generated...
    # <<< lint-baseline NAME

- ``ruff``: a ``[tool.ruff.lint.extend-per-file-ignores]`` table, the rules each file breaks today;
- ``ruff-format``: ``[tool.ruff.format] exclude``, the files ``ruff format`` would change today (the
  one mechanical format commit empties it);
- ``mypy``: one ``[[tool.mypy.overrides]]`` per module, the error codes it has today;
- ``importlinter:ID``: the ``ignore_imports`` of contract ID, the edges that break it today (for a
  chain, its last edge, the one that lands in the forbidden module; for ``acyclic_siblings``, the
  sibling dependencies import-linter names as cycle breakers, as wildcard expressions).

The script empties every block, then runs the tools and adds what they report until they report
nothing new (a baseline can reveal more: an ``ignore`` comment made unused, the next five cycle
breakers). So rerunning it after fixes *shrinks* the baseline; a baseline that grows is a new
finding to fix instead, which ``git diff pyproject.toml`` shows. Standard library only; the linters
are run from the venv beside the interpreter running this script (or from PATH).

Usage: .venv/bin/python tools/lint_baseline.py [--check]
  --check: regenerate in memory and exit 1 if pyproject.toml's blocks differ (nothing written).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
SRC = ROOT / "src"
RUFF_PATHS = ["src", "tests", "bench", "tools"]  # as LINT_PATHS in the Makefile
MAX_ROUNDS = 8
BEGIN = "# >>> lint-baseline {name} (tools/lint_baseline.py writes this block: do not edit it by hand)"
END = "# <<< lint-baseline {name}"


def tool(name: str) -> str:
    """The linter's executable: the one installed beside this interpreter, else PATH's."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def run(argv: list[str], **env: str) -> str:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    if result.returncode not in (0, 1):  # 1 = findings; anything else is the tool failing
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


# ---- the blocks in pyproject.toml


def replace_block(text: str, name: str, body: list[str]) -> str:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(rf"^{re.escape(begin)}\n.*?^{re.escape(end)}$", re.S | re.M)
    if not pattern.search(text):
        sys.exit(f"pyproject.toml has no block {name!r}: add the two marker lines\n{begin}\n{end}")
    return pattern.sub(lambda _: "\n".join([begin, *body, end]), text, count=1)


def block_names(text: str) -> list[str]:
    return re.findall(r"^# >>> lint-baseline (\S+) ", text, re.M)


def render(ruff: dict[str, set[str]], unformatted: set[str], mypy: dict[str, set[str]], imports: dict[str, set[str]], text: str) -> str:
    body = ["[tool.ruff.lint.extend-per-file-ignores]"] if ruff else []
    body += [f'"{path}" = [{", ".join(json.dumps(c) for c in sorted(codes))}]' for path, codes in sorted(ruff.items())]
    text = replace_block(text, "ruff", body)
    body = ["exclude = [", *(f"    {json.dumps(path)}," for path in sorted(unformatted)), "]"] if unformatted else []
    text = replace_block(text, "ruff-format", body)
    body = []
    for module, codes in sorted(mypy.items()):
        body += ["[[tool.mypy.overrides]]", f'module = "{module}"', f"disable_error_code = [{', '.join(json.dumps(c) for c in sorted(codes))}]"]
    text = replace_block(text, "mypy", body)
    for name in block_names(text):
        if name.startswith("importlinter:"):
            edges = sorted(imports.get(name.partition(":")[2], ()))
            body = ["ignore_imports = [", *(f"    {json.dumps(e)}," for e in edges), "]"] if edges else []
            text = replace_block(text, name, body)
    return text


# ---- the tools' findings


def ruff_findings() -> list[tuple[str, str]]:
    out = run([tool("ruff"), "check", *RUFF_PATHS, "--output-format", "json", "--exit-zero", "--no-cache"])
    found = []
    for item in json.loads(out or "[]"):
        if not item.get("code"):
            sys.exit(f"ruff cannot parse {item['filename']}: {item['message']}")
        found.append((Path(item["filename"]).resolve().relative_to(ROOT).as_posix(), item["code"]))
    return found


def unformatted_files() -> set[str]:
    out = run([tool("ruff"), "format", "--check", *RUFF_PATHS, "--output-format", "json", "--no-cache"])
    return {Path(item["filename"]).resolve().relative_to(ROOT).as_posix() for item in json.loads(out or "[]")}


def module_of(path: str) -> str:
    parts = list(Path(path).resolve().relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def mypy_findings() -> list[tuple[str, str]]:
    out = run([tool("mypy"), "--output", "json", "--no-incremental"])
    found = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if item["severity"] != "error":
            continue
        if not item.get("code"):
            sys.exit(f"mypy error without a code, fix it: {item['file']}:{item['line']}: {item['message']}")
        found.append((module_of(item["file"]), item["code"]))
    return found


EDGE = re.compile(r"([\w.]+) -> ([\w.]+) \(l\.")
SIBLING_EDGE = re.compile(r"^- (\.[\w.]+) -> (\.[\w.]+) \(\d+ imports?\)")
CYCLE_HEADER = re.compile(r"^No cycles are allowed in ([\w.]+)\.")


def is_package(module: str) -> bool:
    return (SRC / module.replace(".", "/")).is_dir()


def expression(module: str) -> str:
    """A package stands for everything in it (an acyclic_siblings edge is between siblings)."""
    return f"{module}.**" if is_package(module) else module


def import_findings(contracts: dict[str, str]) -> list[tuple[str, str]]:
    """(contract id, ignore expression) for every violation lint-imports reports."""
    out = run([tool("lint-imports"), "--no-cache"], COLUMNS="100000", NO_COLOR="1")
    by_name = {name: cid for cid, name in contracts.items()}
    found: list[tuple[str, str]] = []
    current = None
    chain: list[str] = []
    parent = ""

    def close_chain() -> None:
        edges = [EDGE.search(line) for line in chain]
        edges = [e for e in edges if e]
        if current and edges:
            found.append((current, f"{edges[-1][1]} -> {edges[-1][2]}"))
        chain.clear()

    lines = out.split("Broken contracts", 1)[1].splitlines() if "Broken contracts" in out else []
    for i, line in enumerate(lines):
        if line in by_name and i + 1 < len(lines) and set(lines[i + 1]) == {"-"}:
            close_chain()
            current = by_name[line]
        elif (m := CYCLE_HEADER.match(line)) is not None:
            close_chain()
            parent = m[1]
        elif (m := SIBLING_EDGE.match(line)) is not None and current:
            found.append((current, f"{expression(parent + m[1])} -> {expression(parent + m[2])}"))
        elif line.lstrip().startswith("- "):
            close_chain()
            chain.append(line)
        elif not line.strip():
            close_chain()
        elif chain:
            chain.append(line)
    close_chain()
    return found


# ---- main


def main() -> int:
    check = "--check" in sys.argv[1:]
    original = PYPROJECT.read_text()
    config = tomllib.loads(original)
    contracts = {c["id"]: c["name"] for c in config["tool"]["importlinter"]["contracts"]}
    ruff: dict[str, set[str]] = defaultdict(set)
    unformatted: set[str] = set()
    mypy: dict[str, set[str]] = defaultdict(set)
    imports: dict[str, set[str]] = defaultdict(set)
    counts = {"ruff": Counter(), "mypy": Counter(), "mypy_codes": Counter(), "imports": Counter()}
    try:
        PYPROJECT.write_text(render({}, set(), {}, {}, original))
        for _ in range(MAX_ROUNDS):
            new = 0
            for path, code in ruff_findings():
                counts["ruff"][code] += 1
                new += code not in ruff[path]
                ruff[path].add(code)
            files = unformatted_files()
            new += len(files - unformatted)
            unformatted |= files
            for module, code in mypy_findings():
                counts["mypy"][module] += 1
                counts["mypy_codes"][code] += 1
                new += code not in mypy[module]
                mypy[module].add(code)
            for cid, edge in import_findings(contracts):
                counts["imports"][cid] += edge not in imports[cid]
                new += edge not in imports[cid]
                imports[cid].add(edge)
            PYPROJECT.write_text(render(ruff, unformatted, mypy, imports, original))
            if not new:
                break
        else:
            sys.exit(f"the baseline still grew after {MAX_ROUNDS} rounds")
        # A contract import-linter cannot even check (a module renamed away) is no finding to
        # ignore: show it, for the contract to be corrected by hand.
        final = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
        if final.returncode != 0:
            sys.exit(f"lint-imports still fails with the baseline (a contract to correct by hand?):\n{final.stdout}{final.stderr}")
        result = PYPROJECT.read_text()
    finally:
        if check:
            PYPROJECT.write_text(original)
    print(f"ruff: {sum(counts['ruff'].values())} findings in {len(ruff)} files: " + ", ".join(f"{c} {n}" for c, n in counts["ruff"].most_common()))
    print(f"ruff format: {len(unformatted)} files would be reformatted")
    print(f"mypy: {sum(counts['mypy'].values())} errors in {len(mypy)} modules: " + ", ".join(f"{c} {n}" for c, n in counts["mypy_codes"].most_common()))
    for module, n in counts["mypy"].most_common():
        print(f"  {module}: {n} ({', '.join(sorted(mypy[module]))})")
    broken = sorted(imports)
    print(f"import-linter: {len(broken)} contracts broken today: " + ", ".join(f"{cid} ({counts['imports'][cid]} ignored edges)" for cid in broken))
    if check and result != original:
        print("pyproject.toml's lint baseline is out of date: run `make lint-baseline` and review the diff", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
