"""Scheduled services on this machine's engine: a job container the deploy creates and never
starts, a scheduler container that starts it on the minute, status with the last run and exit
code, runs on demand, replacement that never interrupts a run, and removal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.runtime import LABEL_CONFIG, LABEL_ROLE
from projectdeployer.deploy import jobs
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).with_name("projectdeployer")
TOKEN = "tok-8b1e"

JOB = """\
import datetime, os, sys, time

out = "/out"
with open(os.environ["TOKEN_FILE"]) as fh:
    token = "ok" if fh.read() == "@TOKEN@" else "wrong"
line = f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} greeting={os.environ.get('GREETING')} token={token}"
with open(os.path.join(out, "runs.txt"), "a") as fh:
    fh.write(line + "\\n")
print("job ran:", line, flush=True)
if os.path.exists(os.path.join(out, "sleep")):
    time.sleep(float(open(os.path.join(out, "sleep")).read()))
code = int(open(os.path.join(out, "exit_code")).read()) if os.path.exists(os.path.join(out, "exit_code")) else 0
print("exiting with", code, flush=True)
sys.exit(code)
""".replace("@TOKEN@", TOKEN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sched(tmp_path: Path, bed: dict[str, str], docker_client, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    name = f"sc{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    source = tmp_path / "job"
    source.mkdir()
    (source / "job.py").write_text(JOB)
    (source / "requirements.txt").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the job runs as the image's non-root user
    monkeypatch.setenv("PD_SCHED_TOKEN", TOKEN)
    path = tmp_path / "sched.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + f'\n[services.job]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python job.py"\nschedule = "* * * * *"\n'
        + f'volumes = {{"{out}" = "/out"}}\nenv_vars = {{GREETING = "hello", TOKEN = "env:PD_SCHED_TOKEN"}}\n'
        + f'\n[services.other]\ntype = "generic"\nimage = "{bed["python"]}"\ncommand = "python3 -c \'print(42)\'"\nschedule = "0 0 1 1 *"\n'
    )
    try:
        yield {"name": name, "path": path, "out": out, "project": ProjectDeployer(str(path), path=path)}
    finally:
        remove_project(docker_client, name)


def _get(docker_client, name: str):  # type: ignore[no-untyped-def]
    import docker.errors

    try:
        return docker_client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _rows(project: ProjectDeployer) -> dict[str, dict]:
    return {r["service"]: r for r in project.service_status("dev")}


def test_scheduled_jobs_run_on_the_minute_show_in_status_run_on_demand_and_go_away(sched: dict, docker_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    project: ProjectDeployer = sched["project"]
    name, out = sched["name"], sched["out"]
    quiet = {"log": lambda line: None}
    job_name, scheduler_name = f"{name}_dev_job", f"{name}_dev_scheduler"

    began = datetime.now(UTC)
    report = project.deploy(env="dev", **quiet)
    assert {o.service: (o.action, o.slot) for o in report.outcomes} == {"job": ("create", "job"), "other": ("create", "job")}

    # The job container exists, was never started, publishes nothing and never restarts.
    job = _get(docker_client, job_name)
    read_at = datetime.now(UTC)
    # The scheduler may legitimately start it at a minute boundary: one that passed while the
    # deploy ran (the scheduler starts before the deploy returns) or that comes as it is read.
    if began.replace(second=0, microsecond=0) == read_at.replace(second=0, microsecond=0) and read_at.second < 55:
        assert job.status == "created"
    assert job.labels[LABEL_ROLE] == "job" and job.labels[LABEL_CONFIG]
    assert job.attrs["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
    assert not job.attrs["HostConfig"]["PortBindings"]
    # One scheduler, no network, the engine's socket, the job table read-only.
    scheduler = _get(docker_client, scheduler_name)
    assert scheduler.status == "running" and scheduler.labels[LABEL_ROLE] == "scheduler"
    assert jobs.scheduler_name(name, "dev") == scheduler_name
    assert scheduler.attrs["HostConfig"]["NetworkMode"] == "none"
    mounts = {m["Destination"]: m for m in scheduler.attrs["Mounts"]}
    assert "/var/run/docker.sock" in mounts and mounts["/pd-scheduler"]["RW"] is False
    assert "scheduler ready: 2 job(s)" in scheduler.logs().decode()

    # The proof: the scheduler starts the job at a real minute boundary (UTC).
    wait_for(lambda: (out / "runs.txt").exists() and f"job: started {job_name}" in scheduler.logs().decode(), timeout=130, what="the first scheduled run")
    wait_for(lambda: _rows(project)["job"]["exit_code"] is not None, timeout=30, what="the scheduled run to finish")
    line = (out / "runs.txt").read_text().splitlines()[0]
    assert "greeting=hello token=ok" in line  # environment and private files as for any service
    job.reload()
    started = datetime.fromtimestamp(jobs.since_epoch(job.attrs["State"]["StartedAt"]), UTC)
    assert started.second < 10, f"started at {started}, not at a minute boundary"
    row = _rows(project)["job"]
    assert row["state"] == "scheduled" and row["schedule"] == "* * * * *"
    assert row["last_run"] == job.attrs["State"]["StartedAt"] and row["last_finished"] and row["exit_code"] == 0
    assert row["health"] == "ok"
    assert _rows(project)["other"]["health"] == "never ran"

    # A new schedule changes the job table, not the job container: only the scheduler is recreated.
    project.update_service("job", schedule="0 0 1 1 *")
    ids = {n: _get(docker_client, n).id for n in (job_name, scheduler_name, f"{name}_dev_other")}
    report = project.deploy(env="dev", build=False, **quiet)
    assert [o.action for o in report.outcomes] == ["unchanged", "unchanged"]
    assert _get(docker_client, job_name).id == ids[job_name]
    assert _get(docker_client, scheduler_name).id != ids[scheduler_name]
    assert "'0 0 1 1 *'" in _get(docker_client, scheduler_name).logs().decode()

    # An unchanged redeploy touches nothing.
    ids = {n: _get(docker_client, n).id for n in ids}
    plan = project.plan("dev")
    assert [p.action for p in plan.services] == ["unchanged", "unchanged"] and plan.scheduler.action == "unchanged"
    started_redeploy = time.monotonic()
    report = project.deploy(env="dev", build=False, **quiet)
    assert [o.action for o in report.outcomes] == ["unchanged", "unchanged"]
    assert {n: _get(docker_client, n).id for n in ids} == ids
    assert time.monotonic() - started_redeploy < 15

    # Run on demand: the API returns the exit code, the CLI exits with it.
    (out / "exit_code").write_text("3")
    lines: list[str] = []
    assert project.run_job("job", env="dev", output=lines.append, **quiet) == 3
    assert any("token=ok" in line for line in lines) and lines[-1] == "exiting with 3"
    assert not any("exiting with 0" in line for line in lines)  # only this run's output
    row = _rows(project)["job"]
    assert (row["exit_code"], row["health"]) == (3, "failed")
    (out / "exit_code").write_text("0")
    proc = subprocess.run([str(BIN), "-f", str(sched["path"]), "run", "job", "--env", "dev", "--wait"], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "exiting with 0" in proc.stdout
    (out / "exit_code").write_text("5")
    proc = subprocess.run([str(BIN), "-f", str(sched["path"]), "run", "job", "--wait"], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 5 and "Traceback" not in proc.stderr
    (out / "exit_code").write_text("0")

    # A changed job is never replaced during a run: the deploy waits (here 1 s), then defers.
    (out / "sleep").write_text("120")
    assert project.run_job("job", env="dev", wait=False, **quiet) == 0
    wait_for(lambda: _get(docker_client, job_name).status == "running", timeout=20, what="the job to run")
    with pytest.raises(ProjectDeployerError, match="a run is in progress"):
        project.run_job("job", env="dev", **quiet)
    monkeypatch.setattr(jobs, "RUN_WAIT_SECONDS", 1.0)
    project.update_service("job", env_vars={"GREETING": "changed", "TOKEN": "env:PD_SCHED_TOKEN"})
    running_id = _get(docker_client, job_name).id
    report = project.deploy(env="dev", build=False, **quiet)
    assert {o.service: o.action for o in report.outcomes} == {"job": "deferred", "other": "unchanged"}
    assert _get(docker_client, job_name).id == running_id and _get(docker_client, job_name).status == "running"
    (out / "sleep").unlink()
    _get(docker_client, job_name).stop(timeout=1)
    report = project.deploy(env="dev", build=False, **quiet)
    assert {o.service: o.action for o in report.outcomes} == {"job": "update", "other": "unchanged"}
    assert _get(docker_client, job_name).id != running_id and _get(docker_client, job_name).status == "created"
    assert project.run_job("job", env="dev", output=lambda line: None, **quiet) == 0
    assert "greeting=changed token=ok" in (out / "runs.txt").read_text().splitlines()[-1]

    # Removing a scheduled service removes its job container; the last one takes the scheduler.
    project.delete_service("job")
    project.deploy(env="dev", build=False, **quiet)
    assert _get(docker_client, job_name) is None
    assert "other" in _get(docker_client, scheduler_name).logs().decode()
    project.delete_service("other")
    project.deploy(env="dev", build=False, **quiet)
    assert _get(docker_client, f"{name}_dev_other") is None and _get(docker_client, scheduler_name) is None
    assert project.plan("dev").scheduler is None
