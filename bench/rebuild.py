"""No-change rebuild time as a ratio of the first build, in one run on this engine.

Builds examples/python-api (requirements installed from the package index) from a fresh copy
whose requirements carry a unique comment, so Docker's layer cache cannot serve the first
build; then builds it again unchanged, then again after only touching every file. Needs the
image bed (make images). Prints the figure last.
Usage: python bench/rebuild.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import docker

from projectdeployer import ProjectDeployer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python-api"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROJECTDEPLOYER_HOME"] = str(Path(tmp) / "home")
        source = Path(tmp) / "api"
        shutil.copytree(EXAMPLE, source)
        with open(source / "requirements.txt", "a") as fh:
            fh.write(f"# bench {uuid.uuid4().hex}\n")
        project = ProjectDeployer.create("bench", path=Path(tmp) / "bench.toml")
        text = project.path.read_text().replace('python = "python:{version}-slim"', 'python = "pd-test/python:3.11"')
        project.path.write_text(text)
        project.reload().add_python_service("api", build_context=str(source), command="python app.py", port=8000)

        def timed() -> tuple[float, bool]:
            start = time.perf_counter()
            built = project.build(env="dev", log=lambda line: None)["api"]
            return time.perf_counter() - start, built.cached

        first, _ = timed()
        again, reused = timed()
        for path in source.rglob("*"):
            os.utime(path)
        touched, touched_reused = timed()

        docker.from_env().images.remove("bench-api:latest", force=True)
    print(f"first build: {first:.2f}s")
    print(f"touch-only rebuild: {touched:.3f}s reused={touched_reused}")
    print(f"no-change rebuild: {again:.3f}s reused={reused}")
    print(f"no-change rebuild / first build = {again / first:.4f}")


if __name__ == "__main__":
    main()
