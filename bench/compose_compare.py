"""The same redeploy, under the same load: `docker-compose up -d` beside ProjectDeployer.

One web service, examples/python-api, in two versions built up front with our builder
(images `<name>-api:v1` and `<name>-api:v2`, the project's `version` setting picks the tag),
so both sides time only the deploy:

  compose   a compose file (Debian's docker-compose v1) running `<name>-api:v1` with its port
            published on 127.0.0.1:<free port>; the file is rewritten to `:v2` and
            `docker-compose up -d` recreates the container (stop the old one, start the new).
  ours      the project deployed with v1 (build=False) behind the nginx sidecar on a free
            127.0.0.1 port; the project file's version set to v2 and deployed (build=False).

Each side gets the same load (the one bench/zero_downtime.py applies: --rate plain GETs/s on
keep-alive and fresh connections, a 1.5 s request every 0.5 s, two 3 s streams open at all
times) for the same window: --settle seconds before the redeploy, the redeploy, --settle
seconds after. Deploy time is the wall time of `docker-compose up -d` / `deploy()`; "live
after" is when GET / first answered with v2 (polled 5 times a second, outside the count).

Prints each side's load summary, then compose failed/sent, ours failed/sent, both deploy
times, and LAST
  ours: failed=0 sent=M | compose: failed=K sent=M2 | deploy time ours/compose = R.RR
Exit status 1 if ours failed any request. Everything it creates (containers, networks,
volumes, images, its PROJECTDEPLOYER_HOME) is removed at the end, also after an error.
Needs the image bed (make images) and docker-compose. All traffic goes to 127.0.0.1.

Usage: python bench/compose_compare.py [--rate 150] [--settle 5] [--strict]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from zero_downtime import (
    DOMAIN,
    QUIET,
    VersionWatch,
    check_bed,
    exit_on_sigterm,
    free_port,
    get_json,
    load_for,
    make_load,
    remove_project,
    set_version,
    short_summary,
    stale_line,
    temporary_home,
    unique_name,
    write_project,
)

from projectdeployer import ProjectDeployer
from projectdeployer.rehearse.loadgen import LoadResult

COMPOSE_TIMEOUT = 300  # seconds; a bounded wait for any docker-compose command


def set_project_version(path: Path, version: str) -> ProjectDeployer:
    """Set ``[project] version`` (the tag of the built images) and load the project afresh."""
    text = path.read_text()
    if "\nversion = " in text:
        start = text.index("\nversion = ") + 1
        end = text.index("\n", start)
        text = text[:start] + f'version = "{version}"' + text[end:]
    else:
        text = text.replace("[project]\n", f'[project]\nversion = "{version}"\n', 1)
    path.write_text(text)
    return ProjectDeployer(str(path), path=path)


def compose_file(image: str, port: int) -> str:
    return f'version: "2.4"\nservices:\n  api:\n    image: {image}\n    command: ["python", "app.py"]\n    environment:\n      PORT: "8000"\n    ports:\n      - "127.0.0.1:{port}:8000"\n'


def compose(workdir: Path, project: str, *args: str) -> float:
    """Run one docker-compose command; returns its wall time."""
    started = time.monotonic()
    proc = subprocess.run(
        ["docker-compose", "--no-ansi", "-p", project, "-f", str(workdir / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"docker-compose {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return seconds


def wait_serving(port: int, version: str, host: str | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if get_json(port, host=host or "localhost")["version"] == version:
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port} did not serve {version} within {timeout:.0f}s: {last!r}")


def measure(port: int, args: argparse.Namespace, redeploy: callable) -> tuple[LoadResult, float, float | None]:  # type: ignore[valid-type]
    """Load for --settle s, ``redeploy()`` (timed), load for --settle s; the load's result,
    the redeploy's wall time, and when v2 was first served (seconds after the redeploy began)."""
    with VersionWatch(port) as watch, make_load(port, args.rate, strict=args.strict) as load:
        load.wait_sent(int(args.rate), timeout=30)
        load_for(load, args.settle)
        began = time.monotonic()
        redeploy()
        seconds = time.monotonic() - began
        load_for(load, args.settle)
        live = watch.first_served("v2", began)
    assert load.result is not None
    return load.result, seconds, live


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="plain requests per second")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after the redeploy")
    parser.add_argument("--strict", action="store_true", help="no stale keep-alive retry on either side")
    args = parser.parse_args()
    if shutil.which("docker-compose") is None:
        sys.exit("docker-compose is not installed (apt-get install docker-compose; make system-deps does it)")
    exit_on_sigterm()
    check_bed()

    name = unique_name("cmpb")
    compose_project = f"{name}c"
    tags = (f"{name}-api:v1", f"{name}-api:v2")
    problems: list[str] = []
    with temporary_home() as workdir:
        http_port, https_port = free_port(), free_port()
        compose_port = free_port()
        path, source = write_project(workdir, name, http_port, https_port)
        compose_up = False
        try:
            # Both images, built up front by our builder: the deploys below only deploy.
            for version in ("v1", "v2"):
                set_version(source, version)
                built = set_project_version(path, version).build(env="dev", log=QUIET)["api"]
                print(f"built {built.tag} in {built.seconds:.1f}s", flush=True)

            # docker-compose: v1 up, then the same load around `up -d` with v2.
            (workdir / "docker-compose.yml").write_text(compose_file(tags[0], compose_port))
            compose_up = True
            compose(workdir, compose_project, "up", "-d")
            wait_serving(compose_port, "v1", DOMAIN)
            print(
                f"compose: {tags[0]} on http://127.0.0.1:{compose_port}/ (docker-compose "
                f"{subprocess.run(['docker-compose', 'version', '--short'], capture_output=True, text=True, timeout=60).stdout.strip()})",
                flush=True,
            )

            def compose_redeploy() -> None:
                (workdir / "docker-compose.yml").write_text(compose_file(tags[1], compose_port))
                compose(workdir, compose_project, "up", "-d")

            theirs, compose_s, compose_live = measure(compose_port, args, compose_redeploy)
            wait_serving(compose_port, "v2", DOMAIN)
            compose(workdir, compose_project, "down", "-v", "--remove-orphans")
            compose_up = False
            print("--- docker-compose up -d (v1 -> v2) under load")
            print(short_summary(theirs), flush=True)

            # ProjectDeployer: v1 deployed, then the same load around the v2 deploy.
            ours_project = set_project_version(path, "v1")
            ours_project.deploy(env="dev", build=False, log=QUIET)
            wait_serving(http_port, "v1", DOMAIN)
            print(f"ours: {tags[0]} behind the sidecar on http://127.0.0.1:{http_port}/ (Host: {DOMAIN})", flush=True)
            reports = []

            def ours_redeploy() -> None:
                reports.append(set_project_version(path, "v2").deploy(env="dev", build=False, log=QUIET))

            ours, ours_s, ours_live = measure(http_port, args, ours_redeploy)
            wait_serving(http_port, "v2", DOMAIN)
            actions = [o.action for o in reports[0].outcomes]
            if actions != ["update"]:
                problems.append(f"our v2 deploy did {actions}, expected ['update']")
            print("--- ProjectDeployer deploy (v1 -> v2, build=False) under load")
            print(short_summary(ours), flush=True)
        finally:
            if compose_up:
                try:
                    compose(workdir, compose_project, "down", "-v", "--remove-orphans")
                except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                    problems.append(f"docker-compose down: {exc}")
            problems.extend(remove_project(name, tags))

    def live(seconds: float | None) -> str:
        return f"{seconds:.2f}s" if seconds is not None else "never seen"

    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"load on each side: {args.rate:g} req/s plain + slow + 2 streams, {args.settle:g}s before and {args.settle:g}s after the redeploy" + (" (strict)" if args.strict else ""))
    print(f"compose {stale_line(theirs, strict=args.strict)}")
    print(f"ours {stale_line(ours, strict=args.strict)}")
    print(f"compose: failed={theirs.failed} sent={theirs.sent}")
    print(f"ours: failed={ours.failed} sent={ours.sent}")
    print(f"compose deploy: {compose_s:.2f}s (v2 first served {live(compose_live)} after it began)")
    print(f"ours deploy: {ours_s:.2f}s (v2 first served {live(ours_live)} after it began)")
    print(f"ours: failed={ours.failed} sent={ours.sent} | compose: failed={theirs.failed} sent={theirs.sent} | deploy time ours/compose = {ours_s / compose_s:.2f}", flush=True)
    return 1 if ours.failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
