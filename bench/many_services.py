"""Many services: how deploy times grow with the number of services, and that they do not fail.

Deploys projects of 1, 20 and 40 web services (``--sizes``) to this machine's Docker engine,
``--runs`` times (default 10). Every service runs the same image (examples/python-api, built
once up front), so the builds do not dominate: what grows is the deploy engine's own work.
Per run and size, a fresh project (its own name):

  1. first deploy       every service created (parallel toggles behind one nginx sidecar)
  2. unchanged redeploy deploy again with nothing changed: every service ``unchanged``, no
                        container restarted (checked by container id)

then its containers and network are removed. The sizes are interleaved within each run, so
the machine's noise falls on all of them alike. Any exception, a service that is not
``unchanged`` on the redeploy or a restarted container counts as an error (and is printed).

Prints a table of median times (min-max) and their growth against one service, then LAST
``unchanged_redeploy_20/1=R unchanged_redeploy_40/1=R first_deploy_20/1=R first_deploy_40/1=R
errors=N`` (ratios of medians in one run: the machine is shared, absolute times move).
Exit status 1 on any error, or when an unchanged redeploy of 20 services costs more than twice
one of a single service (issue 12 item 8).

Everything it creates (containers, networks, the image, its PROJECTDEPLOYER_HOME) is removed
at the end, also after an error or Ctrl-C/SIGTERM. Needs the image bed (make images).

Usage: python bench/many_services.py [--runs 10] [--sizes 1,20,40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import docker
import repo_root  # noqa: F401  (tests.support importable)
from zero_downtime import QUIET, check_bed, exit_on_sigterm, remove_project, temporary_home, unique_name

from projectdeployer import ProjectDeployer
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.runtime import LABEL_PROJECT
from tests.support.manyservices import build_shared_image, many_services_toml

#: The largest acceptable unchanged_redeploy_20/1 (issue 12 item 8).
LIMIT = 2.0


def container_ids(name: str) -> set[str]:
    client = docker.from_env(timeout=120)
    return {c.id for c in client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"})}


def one_size(workdir: Path, name: str, count: int, image: str, errors: list[str]) -> tuple[float | None, float | None]:
    """First deploy and unchanged redeploy of a fresh ``count``-service project; their wall
    times (``None`` when that step failed: the error is in ``errors``)."""
    path = workdir / f"{name}.toml"
    path.write_text(many_services_toml(name, count, image))
    project = ProjectDeployer(str(path), path=path)

    def timed(label: str, step: Callable[[], object]) -> tuple[float | None, object]:
        began = time.monotonic()
        try:
            result = step()
        except Exception as exc:  # noqa: BLE001 - counted and shown; the bench goes on
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            errors.append(f"{count} services, {label}: {type(exc).__name__}: {' / '.join(lines[:4])}")
            if not isinstance(exc, ProjectDeployerError):
                traceback.print_exc()  # not one of ours: a bug, shown in full
            return None, None
        return time.monotonic() - began, result

    try:
        first, _ = timed("first deploy", lambda: project.deploy(env="dev", log=QUIET))
        if first is None:
            return None, None
        before = container_ids(name)
        again, report = timed("unchanged redeploy", lambda: project.deploy(env="dev", log=QUIET))
        if again is not None:
            actions = [o.action for o in report.outcomes]  # type: ignore[attr-defined]
            if actions != ["unchanged"] * count:
                errors.append(f"{count} services, unchanged redeploy: actions {sorted(set(actions))}, expected only unchanged")
                again = None
            elif container_ids(name) != before:
                errors.append(f"{count} services, unchanged redeploy: containers were replaced")
                again = None
        return first, again
    finally:
        for problem in remove_project(name):
            errors.append(f"{count} services, cleanup: {problem}")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.2f}s ({min(values):.2f}-{max(values):.2f})"


def ratio(values: dict[int, list[float]], size: int) -> str:
    top, base = median(values.get(size, [])), median(values.get(1, []))
    return f"{top / base:.2f}" if top is not None and base else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="how many times each size is deployed (default 10)")
    parser.add_argument("--sizes", default="1,20,40", help="service counts, comma-separated (default 1,20,40; must include 1)")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if args.runs < 1 or not sizes or sizes[0] != 1:
        parser.error("--runs must be >= 1 and --sizes must include 1 (the growth is measured against it)")
    exit_on_sigterm()
    check_bed()

    base = unique_name("bms")
    errors: list[str] = []
    first: dict[int, list[float]] = {size: [] for size in sizes}
    unchanged: dict[int, list[float]] = {size: [] for size in sizes}
    with temporary_home() as workdir:
        try:
            began = time.monotonic()
            image = build_shared_image(workdir, base)
            print(f"image {image} built in {time.monotonic() - began:.1f}s; sizes {sizes}, {args.runs} run(s)", flush=True)
            for run in range(1, args.runs + 1):
                row = []
                for size in sizes:
                    took_first, took_again = one_size(workdir, f"{base}r{run}n{size}", size, image, errors)
                    if took_first is not None:
                        first[size].append(took_first)
                    if took_again is not None:
                        unchanged[size].append(took_again)
                    shown = lambda t: f"{t:.2f}s" if t is not None else "ERROR"  # noqa: E731
                    row.append(f"{size}: first {shown(took_first)} unchanged {shown(took_again)}")
                print(f"run {run:2d}/{args.runs}  " + " | ".join(row), flush=True)
        finally:
            errors.extend(f"cleanup: {p}" for p in remove_project(base))

    print()
    print(f"{'services':>8}  {'first deploy median (min-max)':<30} {'unchanged redeploy median (min-max)':<36} growth vs 1 (first, unchanged)")
    for size in sizes:
        print(f"{size:>8}  {spread(first[size]):<30} {spread(unchanged[size]):<36} {ratio(first, size)}x, {ratio(unchanged, size)}x")
    for error in errors:
        print(f"ERROR: {error}")
    figures = [f"unchanged_redeploy_{s}/1={ratio(unchanged, s)}" for s in sizes if s != 1]
    figures += [f"first_deploy_{s}/1={ratio(first, s)}" for s in sizes if s != 1]
    print(" ".join(figures) + f" errors={len(errors)}", flush=True)
    over = 20 in sizes and ratio(unchanged, 20) not in ("-",) and float(ratio(unchanged, 20)) > LIMIT
    return 1 if errors or over else 0


if __name__ == "__main__":
    sys.exit(main())
