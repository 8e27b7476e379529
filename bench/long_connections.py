"""Long connections, measured: a pooled app's switch time against a pool-less twin's, and failed
requests under load long after the deploys.

Deploys PostgreSQL and two copies of one web app (tests/docker/apps/pooled) to this machine's
Docker engine: `pooled` keeps a pool of 4 PostgreSQL connections open for its whole life (opened
at start, never re-checked: a cut connection is a failed request), `plain` is the same app with
no database. Under load on both (plain requests, and 2 chunked streams of 2 s open at all times
on each), it runs:

  1. new-version   a code change: both rebuilt and switched
  2. rollback      each service back to its previous release
  3. redeploy      the project file again

then keeps the load running for --after seconds (default 70: past the drain timeout, 30 s, and
the sidecar's client keep-alive timeout, 65 s). With one nginx for HTTP and TCP routes, the
pooled app's sessions kept the sidecar's old workers alive: every switch waited out the 30 s
drain ("requests still in flight"), and the sessions its new container opened before the
switch were cut 300 s later. Now the TCP routes have their own proxy, untouched by web deploys,
and the drain waits for the connections to the old container only.

Per phase it prints each service's switch time (the engine's time for that service: start,
health, switch, drain, stop). LAST: `failed=N sent=M switch_pooled/plain=R.RR` (the median of
the pooled app's switch times over the pool-less one's: about 1 means a pool costs nothing).
Exit status 1 if anything failed or a deploy waited out its drain.

Everything it creates is removed at the end, also after an error or Ctrl-C/SIGTERM.

Usage: python bench/long_connections.py [--rate 60] [--after 70]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import repo_root  # noqa: F401  (tests.support importable)
from zero_downtime import QUIET, check_bed, exit_on_sigterm, free_port, get_json, remove_project, temporary_home, unique_name

from projectdeployer import ProjectDeployer
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.support.bed import BED_IMAGES

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "docker" / "apps" / "pooled"
SERVICES = {"pooled": "4", "plain": "0"}


def write_project(workdir: Path, name: str, http_port: int) -> tuple[Path, Path]:
    source = workdir / "app"
    shutil.copytree(APP, source)
    path = workdir / f"{name}.toml"
    text = (
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in BED_IMAGES.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {http_port}\nhttps_port = {free_port()}\n'
        + '\n[services.postgres]\ntype = "postgres"\n'
    )
    for service, pool in SERVICES.items():
        text += (
            f'\n[services.{service}]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
            f'health_path = "/health"\ndepends_on = ["postgres"]\ndomain = "{service}.bench.localhost"\n'
            f'env_vars = {{DATABASE_URL = "auto", POOL_SIZE = "{pool}"}}\n'
        )
    path.write_text(text)
    return path, source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="plain requests per second on each service (default 60)")
    parser.add_argument("--after", type=float, default=70.0, help="seconds of load after the last deploy (default 70)")
    args = parser.parse_args()
    check_bed()
    exit_on_sigterm()
    name = unique_name("lcb")
    started: list[LoadGenerator] = []
    with temporary_home() as workdir:
        try:
            http_port = free_port()
            path, source = write_project(workdir, name, http_port)
            project = ProjectDeployer(str(path), path=path)
            print(f"deploying {name}: postgres, pooled (4 connections), plain (none)", flush=True)
            project.deploy(env="dev", log=QUIET)
            loads = {
                service: LoadGenerator(
                    f"http://127.0.0.1:{http_port}/",
                    rate=args.rate,
                    concurrency=4,
                    host_header=f"{service}.bench.localhost",
                    stream_path="/stream?seconds=2",
                    streams=2,
                    max_seconds=3600,
                )
                for service in SERVICES
            }
            switches: dict[str, list[float]] = {service: [] for service in SERVICES}
            waited: list[str] = []
            for load in loads.values():
                load.start()
                started.append(load)
            for load in loads.values():
                load.wait_sent(100, timeout=30)

            def phase(label: str, action) -> None:  # type: ignore[no-untyped-def]
                lines: list[str] = []
                report = action(lines.append)
                waited.extend(f"{label}: {line}" for line in lines if "still in flight" in line)
                times = {o.service: o.seconds for o in report.outcomes if o.service in SERVICES}
                for service, seconds in times.items():
                    switches[service].append(seconds)
                failed = sum(load.snapshot().failed for load in loads.values())
                sent = sum(load.snapshot().sent for load in loads.values())
                print(f"{label:16} " + "  ".join(f"{s} {t:5.1f}s" for s, t in sorted(times.items())) + f"   failed={failed} sent={sent}", flush=True)

            (source / "version.txt").write_text("v2\n")
            phase("new-version", lambda log: project.deploy(env="dev", log=log))
            for service in SERVICES:
                phase(f"rollback {service}", lambda log, s=service: project.rollback(env="dev", service=s, log=log))
            phase("redeploy", lambda log: project.deploy(env="dev", log=log))
            assert all(get_json(http_port, "/", f"{s}.bench.localhost")["version"] == "v2" for s in SERVICES)
            print(f"load goes on for {args.after:.0f}s more", flush=True)
            time.sleep(args.after)
            results = {service: load.stop() for service, load in loads.items()}
        finally:
            for load in started:
                load.stop()  # idempotent: after an error too, no thread keeps sending
            problems = remove_project(name)
            if problems:
                print("cleanup problems: " + "; ".join(problems), file=sys.stderr)
    for service, result in results.items():
        print(f"--- {service}\n{result.summary()}")
    for line in waited:
        print(f"waited out the drain: {line}")
    failed = sum(r.failed for r in results.values())
    sent = sum(r.sent for r in results.values())
    pooled, plain = statistics.median(switches["pooled"]), statistics.median(switches["plain"])
    print(f"switch median: pooled {pooled:.2f}s, plain {plain:.2f}s")
    print(f"failed={failed} sent={sent} switch_pooled/plain={pooled / plain:.2f}")
    return 1 if failed or waited else 0


if __name__ == "__main__":
    sys.exit(main())
