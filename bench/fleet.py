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

``--provider digitalocean`` runs the same against the fake DigitalOcean (rehearse), its droplets
sandbox servers: the first deploy makes the region's template snapshot. Two more phases under
the same load then add one server each: from the template, and from the base image provisioned
from scratch; LAST adds ``snapshot_server=Ts scratch_server=Ts`` (create to serving).

Everything it creates (servers, their networks and volumes, the image, its PROJECTDEPLOYER_HOME)
is removed at the end, also after an error. Needs the image bed (make images).

Usage: python bench/fleet.py [--rate 60] [--provider sandbox|digitalocean]
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
from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean
from projectdeployer.rehearse.fake_digitalocean.sandbox_machines import SandboxMachines
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.support.bed import images_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python-api"
DOMAIN = "api.fleet.bench"


def project_file(path: Path, name: str, app: Path, count: int, version: str, provider: str = "sandbox") -> None:
    path.write_text(
        f'[project]\nname = "{name}"\n\n{images_table()}\n[environments.bench]\nprovider = "{provider}"\n\n'
        f'[services.api]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        f'servers_count = {count}\nserver_zone = "lon1"\ndomain = "{DOMAIN}"\nhealth_path = "/health"\n'
        f'env_vars = {{ APP_VERSION = "{version}" }}\n'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second through the sidecar")
    parser.add_argument("--provider", choices=("sandbox", "digitalocean"), default="sandbox", help="sandbox servers, or droplets of the fake DigitalOcean")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pd-bench-fleet-"))
    os.environ["PROJECTDEPLOYER_HOME"] = str(home)
    name = f"bfl{os.getpid() % 100000}"
    app = home / "app"
    shutil.copytree(EXAMPLE, app)
    path = home / "fleet.toml"
    failed = sent = 0
    times: dict[int, float] = {}
    added: dict[str, float] = {}
    quiet = lambda line: None  # noqa: E731 - the bench prints its own lines
    cloud = fake = None
    if args.provider == "digitalocean":
        cloud = SandboxMachines(f"b{name}")
        fake = FakeDigitalOcean(Cloud(cloud, action_seconds=0.2), tokens={"bench"}).start()
        os.environ["DIGITALOCEAN_API_TOKEN"], os.environ["DIGITALOCEAN_API_URL"] = "bench", fake.url
    write = lambda count, version: project_file(path, name, app, count, version, args.provider)  # noqa: E731
    try:
        write(3, "1")
        began = time.monotonic()
        ProjectDeployer(str(path), path=path).deploy(env="bench", log=quiet)
        made = "servers from the region's new template" if fake else "image sent to each"
        print(f"first deploy (3 servers created, {made}): {time.monotonic() - began:.1f}s", flush=True)
        provider = ProjectDeployer(str(path), path=path).environment("bench").provider()
        # The load goes through the zone's first server (slot 0: the one scaling down keeps;
        # parallel creation hands out names in any order, so not the first name).
        first = min(provider.list_servers(name, "bench"), key=lambda s: (int(s.tags.get("slot", 0)), s.name))
        with LoadGenerator(f"http://{first.public_address}:80/", host_header=DOMAIN, rate=args.rate) as load:
            load.wait_sent(50, timeout=60)
            phases = [(3, "2", "redeploy on 3 servers"), (1, "2", "scale to 1 server"), (1, "3", "redeploy on 1 server")]
            if fake is not None:
                phases += [(2, "3", "add a server from the template"), (3, "3", "add a server from scratch")]
            for count, version, label in phases:
                write(count, version)
                if fake is not None:  # from scratch: the base image, provisioned over SSH (the seed's create_droplet)
                    provider.use_templates = "scratch" not in label  # type: ignore[attr-defined]
                began = time.monotonic()
                ProjectDeployer(str(path), path=path).deploy(env="bench", log=quiet)
                seconds = time.monotonic() - began
                if label.startswith("redeploy"):
                    times[count] = seconds
                if label.startswith("add"):
                    added["snapshot" if "template" in label else "scratch"] = seconds
                print(f"{label}: {seconds:.1f}s", flush=True)
        failed, sent = load.result.failed, load.result.sent
        print(load.result.summary(), flush=True)
    finally:
        if fake is not None and cloud is not None:
            fake.stop()
            cloud.purge()
        SandboxProvider().purge(name, "bench")
        client = docker.from_env()
        for image in client.images.list(filters={"label": f"io.projectdeployer.project={name}"}):
            try:
                client.images.remove(image.id, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        shutil.rmtree(home, ignore_errors=True)
    ratio = times[3] / times[1] if times.get(1) else float("nan")
    extra = f" snapshot_server={added['snapshot']:.1f}s scratch_server={added['scratch']:.1f}s" if added else ""
    print(f"failed={failed} sent={sent} deploy_3_servers/1_server={ratio:.2f}{extra}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
