"""Start-up time of the CLI: median wall time of `projectdeployer --help` and of `validate`.

Prints each median beside bare `python -c pass` (the floor no CLI can beat) and as a ratio of
it, so a noisy machine shows up in both. `projectdeployer --help` is also timed against Debian's
`docker-compose --help` (a Python CLI too), paired in one run: the two alternate run by run, so
the machine's load weighs on both alike. The figure issue 13 asks for is printed last:
help/docker-compose ratio of the medians, target <= 0.5.
Both run as installed: with their bytecode cached (Debian ships docker-compose's; pip compiles an
installed package's). Ours is written to a temporary PYTHONPYCACHEPREFIX by an untimed first run of
each command, whatever the caller's PYTHONDONTWRITEBYTECODE says: else an editable install in an
environment that sets it would compile its sources on every run, and docker-compose would not.
Usage: python bench/startup.py [runs]   (needs docker-compose: `make bench` installs it)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
BIN = Path(sys.executable).with_name("projectdeployer")


def median_seconds(argv: list[str], env: dict[str, str]) -> float:
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # untimed: caches the bytecode
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(first: list[str], second: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Median wall times of two commands run in turns (which goes first alternates)."""
    for argv in (first, second):  # untimed: caches the bytecode
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: dict[int, list[float]] = {0: [], 1: []}
    for run in range(RUNS):
        order = (0, 1) if run % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            subprocess.run((first, second)[which], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        sys.exit("docker-compose is not installed (Debian's package docker-compose; `make bench` installs it)")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PROJECTDEPLOYER_HOME": home, "PYTHONPYCACHEPREFIX": str(Path(home) / "pycache")}
        env.pop("PROJECTDEPLOYER_LOAD_PLUGINS", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        project = Path(home) / "bench.toml"
        subprocess.run([str(BIN), "-f", str(project), "init", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([str(BIN), "-f", str(project), "add", "postgres"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [str(BIN), "-f", str(project), "add", "python", "api", "--port", "8000", "--depends-on", "postgres", "--schedule", "0 2 * * *"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        floor = median_seconds([sys.executable, "-c", "pass"], env)
        validate_s = median_seconds([str(BIN), "-f", str(project), "validate"], env)
        help_s, compose_s = paired_medians([str(BIN), "--help"], [compose, "--help"], env)
    print(f"runs={RUNS} python_floor={floor:.3f}s (bytecode cached)")
    print(f"validate median={validate_s:.3f}s ratio_to_python={validate_s / floor:.1f}x")
    print(f"help median={help_s:.3f}s ratio_to_python={help_s / floor:.1f}x")
    print(f"docker-compose --help median={compose_s:.3f}s ratio_to_python={compose_s / floor:.1f}x")
    print(f"help/docker-compose median ratio={help_s / compose_s:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
