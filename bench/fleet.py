"""Many servers: failed requests during a redeploy across 3 servers, and what parallel fan-out
costs — the deploy time of the same redeploy on 3 servers against 1 server, in one run.

Deploys a copy of examples/python-api (a web service with a domain) to sandbox servers (containers
running sshd and their own dockerd, reached over SSH, see projectdeployer.providers.sandbox) with
``servers_count = 3``; then, under continuous load through one server's sidecar:

  1. redeploy on 3 servers (a changed variable: a new container on every server, all sidecars
     switched, the old ones drained and stopped);
  2. scale to 1 server (two servers drained and destroyed);
  3. redeploy on 1 server (the same change).

Prints each phase's deploy time and the failed/sent count, then LAST
``failed=N sent=M deploy_3_servers/1_server=R.RR`` (R well under 3: the servers are deployed in
parallel). Exit status 1 when a request failed.

Everything it creates (servers, their networks and volumes, the image, its PROJECTDEPLOYER_HOME)
is removed at the end, also after an error. Needs the image bed (make images).

Usage: python bench/fleet.py [--rate 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import docker
import repo_root  # noqa: F401  (tests.support importable)

from projectdeployer import ProjectDeployer
from projectdeployer.providers.sandbox import SandboxProvider
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.support.bed import images_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python-api"
DOMAIN = "api.fleet.bench"


def project_file(path: Path, name: str, app: Path, count: int, version: str) -> None:
    path.write_text(
        f'[project]\nname = "{name}"\n\n{images_table()}\n[environments.bench]\nprovider = "sandbox"\n\n'
        f'[services.api]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        f'servers_count = {count}\nserver_zone = "lon1"\ndomain = "{DOMAIN}"\nhealth_path = "/health"\n'
        f'env_vars = {{ APP_VERSION = "{version}" }}\n'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second through the sidecar")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pd-bench-fleet-"))
    os.environ["PROJECTDEPLOYER_HOME"] = str(home)
    name = f"bfl{os.getpid() % 100000}"
    app = home / "app"
    shutil.copytree(EXAMPLE, app)
    path = home / "fleet.toml"
    provider = SandboxProvider()
    failed = sent = 0
    times: dict[int, float] = {}
    quiet = lambda line: None  # noqa: E731 - the bench prints its own lines
    try:
        project_file(path, name, app, 3, "1")
        began = time.monotonic()
        ProjectDeployer(str(path), path=path).deploy(env="bench", log=quiet)
        print(f"first deploy (3 servers created, image sent to each): {time.monotonic() - began:.1f}s", flush=True)
        # The load goes through the zone's first server (slot 0: the one scaling down keeps;
        # parallel creation hands out names in any order, so not the first name).
        first = min(provider.list_servers(name, "bench"), key=lambda s: (int(s.tags.get("slot", 0)), s.name))
        with LoadGenerator(f"http://{first.public_address}:80/", host_header=DOMAIN, rate=args.rate) as load:
            load.wait_sent(50, timeout=60)
            for count, version, label in ((3, "2", "redeploy on 3 servers"), (1, "2", "scale to 1 server"), (1, "3", "redeploy on 1 server")):
                project_file(path, name, app, count, version)
                began = time.monotonic()
                ProjectDeployer(str(path), path=path).deploy(env="bench", log=quiet)
                seconds = time.monotonic() - began
                if label.startswith("redeploy"):
                    times[count] = seconds
                print(f"{label}: {seconds:.1f}s", flush=True)
        failed, sent = load.result.failed, load.result.sent
        print(load.result.summary(), flush=True)
    finally:
        provider.purge(name, "bench")
        client = docker.from_env()
        for image in client.images.list(filters={"label": f"io.projectdeployer.project={name}"}):
            try:
                client.images.remove(image.id, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        shutil.rmtree(home, ignore_errors=True)
    ratio = times[3] / times[1] if times.get(1) else float("nan")
    print(f"failed={failed} sent={sent} deploy_3_servers/1_server={ratio:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
