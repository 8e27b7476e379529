"""Zero downtime, measured: failed requests across deploy, rollback and redeploys under load.

Deploys a copy of examples/python-api (one web service with a domain, behind the nginx
sidecar on a free 127.0.0.1 port) to this machine's Docker engine, then, under continuous load
through the sidecar (plain requests at --rate per second on keep-alive and fresh connections,
a /slow request started every 0.5 s, and 2 streaming responses open at all times), runs:

  1. new-version   a code change (APP_VERSION v1 -> v2): build a new image and deploy it
  2. rollback      back to the previous release (v1)
  3. redeploy      deploy the project file again (v2, image already built)
  4. unchanged     deploy again with nothing changed (must restart nothing)

Per phase it prints the deploy time and the running failed/sent count; then the load summary;
then, on the line before last, how many requests the load generator resent because a reused
keep-alive connection was closed before any response byte (RFC 9112 9.3.1, what browsers do;
see projectdeployer.rehearse.loadgen; --strict turns that off); and LAST `failed=N sent=M`
for the whole run. Exit status 1 if anything failed (or a phase did not do what it should).

Everything it creates (containers, network, volumes, images, its PROJECTDEPLOYER_HOME) is
removed at the end, also after an error or Ctrl-C/SIGTERM. Needs the image bed (make images).
All traffic goes to 127.0.0.1.

Usage: python bench/zero_downtime.py [--rate 150] [--settle 3] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import repo_root  # noqa: F401  (tests.support importable)

from projectdeployer import ProjectDeployer
from projectdeployer.core.runtime import LABEL_PROJECT
from projectdeployer.rehearse.loadgen import LoadGenerator, LoadResult
from tests.support.bed import BED_IMAGES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python-api"
DOMAIN = "api.bench.localhost"
#: The image bed, as a project file's [images] table names it (tests/docker/conftest.py).
SLOW_PATH = "/slow?ms=1500"
STREAM_PATH = "/stream?seconds=3"
QUIET: Callable[[str], None] = lambda line: None  # noqa: E731


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_name(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"


def get_json(port: int, path: str = "/", host: str = DOMAIN) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def set_version(source: Path, version: str) -> None:
    """Change the app's code: the default of APP_VERSION in app.py (a new image)."""
    app = source / "app.py"
    text = app.read_text()
    marker = 'os.environ.get("APP_VERSION", "'
    start = text.index(marker) + len(marker)
    end = text.index('"', start)
    app.write_text(text[:start] + version + text[end:])


class VersionWatch:
    """Polls GET / (5 a second, outside the load's count) and remembers when each version was
    first served, so a deploy's "new version live after" can be told from its total time."""

    def __init__(self, port: int, host: str | None = DOMAIN, every: float = 0.2) -> None:
        self._port, self._host, self._every = port, host, every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._run, name="version-watch", daemon=True)

    def __enter__(self) -> VersionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                headers = {"Host": self._host} if self._host else {}
                req = urllib.request.Request(f"http://127.0.0.1:{self._port}/", headers=headers)
                with urllib.request.urlopen(req, timeout=2) as resp:
                    version = json.loads(resp.read())["version"]
            except Exception:  # noqa: BLE001 - down or switching: the load counts failures
                continue
            with self._lock:
                self._seen.append((time.monotonic(), version))

    def first_served(self, version: str, since: float) -> float | None:
        """Seconds from ``since`` until ``version`` was first served after it (None: never)."""
        with self._lock:
            for at, seen in self._seen:
                if at >= since and seen == version:
                    return at - since
        return None


def check_bed() -> None:
    client = docker.from_env()
    missing = [tag for tag in BED_IMAGES.values() if not client.images.list(name=tag)]
    if missing:
        sys.exit(f"missing image bed images {missing}: run `make images` first")


def exit_on_sigterm() -> None:
    """SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C, so cleanup still runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def write_project(workdir: Path, name: str, http_port: int, https_port: int) -> tuple[Path, Path]:
    """A project with one web service (a copy of examples/python-api, so its code can change)."""
    source = workdir / "api"
    shutil.copytree(EXAMPLE, source)
    path = workdir / f"{name}.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in BED_IMAGES.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {http_port}\nhttps_port = {https_port}\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
        + f'health_path = "/health"\ndomain = "{DOMAIN}"\n'
    )
    return path, source


def remove_project(name: str, extra_images: tuple[str, ...] = ()) -> list[str]:
    """Remove every container, network, volume and image (built images carry the project's
    label; ``extra_images``: tags added by the caller) the project left; returns problems."""
    client = docker.from_env(timeout=120)
    problems = []

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - report, keep cleaning
            problems.append(f"{what}: {exc}")

    seen = set()
    for filters in ({"label": f"{LABEL_PROJECT}={name}"}, {"name": f"{name}_dev_"}):
        for container in client.containers.list(all=True, filters=filters):
            if container.id not in seen:
                seen.add(container.id)
                attempt(f"container {container.name}", lambda c=container: c.remove(force=True, v=True))
    for network in client.networks.list(names=[f"{name}_dev_network"]):
        attempt(f"network {network.name}", network.remove)
    for volume in client.volumes.list(filters={"name": f"{name}_dev_"}):
        attempt(f"volume {volume.name}", lambda v=volume: v.remove(force=True))
    for tag in extra_images:
        attempt(f"image {tag}", lambda t=tag: client.images.remove(t, force=True))
    for image in client.images.list(filters={"label": f"{LABEL_PROJECT}={name}"}):
        attempt(f"image {image.short_id}", lambda i=image: client.images.remove(i.id, force=True))
    return problems


@contextmanager
def temporary_home() -> Iterator[Path]:
    """A private PROJECTDEPLOYER_HOME (state, ports, release history) for the bench's projects."""
    saved = os.environ.get("PROJECTDEPLOYER_HOME")
    workdir = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    os.environ["PROJECTDEPLOYER_HOME"] = str(workdir / "home")
    for name in ("PROJECTDEPLOYER_PROJECTS_DIR", "DIGITALOCEAN_API_TOKEN"):
        os.environ.pop(name, None)
    try:
        yield workdir
    finally:
        if saved is None:
            os.environ.pop("PROJECTDEPLOYER_HOME", None)
        else:
            os.environ["PROJECTDEPLOYER_HOME"] = saved
        shutil.rmtree(workdir, ignore_errors=True)


def make_load(port: int, rate: float, *, strict: bool, host: str | None = DOMAIN, max_seconds: float = 600) -> LoadGenerator:
    """The load both benches apply: plain GETs at ``rate``/s (half the workers on keep-alive
    connections, half on a fresh connection per request), a 1.5 s request started every 0.5 s,
    and two 3 s streaming responses open at all times."""
    return LoadGenerator(
        f"http://127.0.0.1:{port}/",
        rate=rate,
        concurrency=8,
        keepalive_share=0.5,
        host_header=host,
        slow_path=SLOW_PATH,
        slow_every=0.5,
        stream_path=STREAM_PATH,
        streams=2,
        timeout=10,
        max_seconds=max_seconds,
        retry_stale_keepalive=not strict,
    )


def load_for(load: LoadGenerator, seconds: float) -> None:
    """Let the load run ``seconds`` more (bounded; fails if it stopped flowing)."""
    target = load.snapshot().sent + 1
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.25))
    load.wait_sent(target, timeout=10)


def short_summary(result: LoadResult, keep: int = 5) -> str:
    """The load summary without its last line (``failed=N sent=M``, printed separately) and
    with only the first ``keep`` failure descriptions (all are counted by kind above them)."""
    lines = result.summary().split("\n")[:-1]
    out, listed = [], 0
    for line in lines:
        if line.startswith("  ") and listed >= keep:
            continue
        listed += line.startswith("  ")
        out.append(line.replace(f"failures (first {len(result.failures)} of", f"failures (first {min(keep, len(result.failures))} of"))
    return "\n".join(out)


def stale_line(result: LoadResult, *, strict: bool = False) -> str:
    if strict:
        return (
            f"stale keep-alive: retry OFF (--strict), every such race counted as failed; "
            f"{result.stale_keepalive_reconnects} idle connection(s) found closed before sending "
            f"(nothing sent, nothing lost)"
        )
    return (
        f"stale keep-alive: {result.retried_on_stale_keepalive} GET(s) resent once on a fresh connection "
        f"after a reused keep-alive connection closed with 0 response bytes (RFC 9112 9.3.1; the resend's "
        f"outcome is what counts), {result.stale_keepalive_reconnects} idle connection(s) found closed "
        f"before sending (nothing sent, nothing lost)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="plain requests per second (>= 100)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load before and after each phase")
    parser.add_argument("--strict", action="store_true", help="no stale keep-alive retry: count that race as a failure too")
    args = parser.parse_args()
    exit_on_sigterm()
    check_bed()

    name = unique_name("zdb")
    problems: list[str] = []
    result: LoadResult | None = None
    with temporary_home() as workdir:
        http_port, https_port = free_port(), free_port()
        path, source = write_project(workdir, name, http_port, https_port)
        project = ProjectDeployer(str(path), path=path)
        try:
            set_version(source, "v1")
            started = time.monotonic()
            project.deploy(env="dev", log=QUIET)
            first = get_json(http_port)["version"]
            print(f"project {name}: api {first} behind the sidecar at http://127.0.0.1:{http_port}/ (Host: {DOMAIN}); first deploy {time.monotonic() - started:.1f}s", flush=True)
            print(
                f"load: {args.rate:g} req/s plain (4 keep-alive + 4 fresh-connection workers), "
                f"{SLOW_PATH} every 0.5 s, 2 x {STREAM_PATH} open at all times" + (", strict (no stale keep-alive retry)" if args.strict else ""),
                flush=True,
            )

            def phase(label: str, expect_version: str, expect_action: str, run: Callable[[], Any]) -> None:
                began = time.monotonic()
                report = run()
                wall = time.monotonic() - began
                actions = ",".join(o.action for o in report.outcomes)
                served = get_json(http_port)["version"]
                load_for(load, args.settle)
                snap = load.snapshot()
                live = watch.first_served(expect_version, began) if expect_action != "unchanged" else None
                live_text = f"{live:5.2f}s" if live is not None else "    -"
                print(
                    f"{label:<12} {actions:<9} deploy {wall:6.2f}s (engine {report.seconds:5.2f}s, "
                    f"{expect_version} live after {live_text})  so far: failed={snap.failed} "
                    f"sent={snap.sent} ({snap.in_flight} in flight)",
                    flush=True,
                )
                if served != expect_version:
                    problems.append(f"{label}: serving {served}, expected {expect_version}")
                if actions != expect_action:
                    problems.append(f"{label}: action {actions}, expected {expect_action}")

            def new_version() -> Any:
                set_version(source, "v2")
                return project.deploy(env="dev", log=QUIET)

            with VersionWatch(http_port) as watch, make_load(http_port, args.rate, strict=args.strict) as load:
                load.wait_sent(int(args.rate), timeout=30)  # the load really flows
                load_for(load, args.settle)
                phase("new-version", "v2", "update", new_version)
                phase("rollback", "v1", "update", lambda: project.rollback(env="dev", service="api", log=QUIET))
                phase("redeploy", "v2", "update", lambda: project.deploy(env="dev", log=QUIET))
                phase("unchanged", "v2", "unchanged", lambda: project.deploy(env="dev", log=QUIET))
            result = load.result
        finally:
            problems.extend(remove_project(name))

    assert result is not None
    print(short_summary(result))
    if result.rps < 100:
        problems.append(f"the load ran at {result.rps:.1f} req/s, under 100")
    if not (result.slow_ok and result.stream_ok):
        problems.append("no slow request or stream completed: nothing was in flight across the switches")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(stale_line(result, strict=args.strict))
    print(f"failed={result.failed} sent={result.sent}", flush=True)
    return 1 if result.failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
