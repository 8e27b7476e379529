"""Start-up time of the CLI: median wall time of `projectdeployer --help` and of `validate`.

Prints each median beside bare `python -c pass` (the floor no CLI can beat) and as a ratio of
it, so a noisy machine shows up in both; the figure the issue asks for is printed last.
Usage: python bench/startup.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
BIN = Path(sys.executable).with_name("projectdeployer")


def median_seconds(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PROJECTDEPLOYER_HOME": home}
        env.pop("PROJECTDEPLOYER_LOAD_PLUGINS", None)
        project = Path(home) / "bench.toml"
        subprocess.run([str(BIN), "-f", str(project), "init", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([str(BIN), "-f", str(project), "add", "postgres"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [str(BIN), "-f", str(project), "add", "python", "api", "--port", "8000", "--depends-on", "postgres", "--schedule", "0 2 * * *"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
        floor = median_seconds([sys.executable, "-c", "pass"], env)
        help_s = median_seconds([str(BIN), "--help"], env)
        validate_s = median_seconds([str(BIN), "-f", str(project), "validate"], env)
    print(f"runs={RUNS} python_floor={floor:.3f}s")
    print(f"validate median={validate_s:.3f}s ratio_to_python={validate_s / floor:.1f}x")
    print(f"help median={help_s:.3f}s ratio_to_python={help_s / floor:.1f}x")


if __name__ == "__main__":
    main()
