"""The scheduler agent without Docker: its minute loop on a fake clock, the Engine API calls over
a unix socket to a fake engine, its job table, and the status fields of a job."""

from __future__ import annotations

import ast
import http.server
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer.agents import scheduler as agent
from projectdeployer.core.runtime import ContainerInfo
from projectdeployer.deploy.jobs import job_status, ran, since_epoch

pytestmark = pytest.mark.unit

AGENT = Path(agent.__file__)


class FakeClock:
    """Wall time that moves only when the agent sleeps (plus what ``lag`` adds per sleep)."""

    def __init__(self, start: float, lag: float = 0.0) -> None:
        self.now = start
        self.lag = lag
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.lag


def _jobs(*specs: tuple[str, str]) -> list[agent.Job]:
    return [agent.Job(service, schedule, f"p_dev_{service}") for service, schedule in specs]


def test_the_loop_runs_once_per_minute_boundary_without_drift() -> None:
    clock = FakeClock(start=1000 * 60 + 42.5, lag=0.3)  # 42.5 s into a minute; every wake 0.3 s late
    started: list[tuple[float, str]] = []

    def start(name: str) -> tuple[int, str]:
        started.append((clock.now, name))
        clock.now += 4.0  # a slow engine: the next sleep must absorb it, not accumulate it
        return 204, ""

    lines: list[str] = []
    agent.run(_jobs(("a", "* * * * *"), ("b", "*/2 * * * *")), start, clock=clock.time, sleep=clock.sleep, log=lines.append, minutes=5)
    # The minute in progress at start-up (1000) is not run; then 1001..1005, each within 0.3 s
    # of its boundary however long the starts took.
    minutes_of_a = [when for when, name in started if name == "p_dev_a"]
    assert [int(w // 60) for w in minutes_of_a] == [1001, 1002, 1003, 1004, 1005]
    assert all(w % 60 < 0.5 for w in minutes_of_a)
    assert [int(w // 60) for w, name in started if name == "p_dev_b"] == [1002, 1004]
    assert sum("started p_dev_a" in line for line in lines) == 5


def test_an_early_wake_or_a_clock_step_back_never_runs_a_minute_twice() -> None:
    clock = FakeClock(start=500 * 60 + 10)
    naps = iter([-0.01, 0.0, -30.0])  # woke 10 ms early; on time; the clock stepped back 30 s

    def sleep(seconds: float) -> None:
        clock.now += seconds + next(naps, 0.0)

    started: list[int] = []
    agent.run(_jobs(("a", "* * * * *")), lambda name: (started.append(int(clock.now // 60)), (204, ""))[1], clock=clock.time, sleep=sleep, log=lambda line: None, minutes=3)
    assert started == sorted(set(started)) and len(started) == 3


def test_skipped_minutes_are_logged_and_not_made_up() -> None:
    clock = FakeClock(start=60 * 60 + 1)
    suspended = [300.0]  # the host slept 5 minutes, once

    def sleep(seconds: float) -> None:
        clock.now += seconds + (suspended.pop() if suspended else 0.0)

    started: list[int] = []
    lines: list[str] = []
    agent.run(_jobs(("a", "* * * * *")), lambda name: (started.append(int(clock.now // 60)), (204, ""))[1], clock=clock.time, sleep=sleep, log=lines.append, minutes=2)
    assert started == [66, 67]
    assert any("skipped 5 minute(s)" in line for line in lines)


def test_engine_answers_become_one_log_line_each() -> None:
    answers = {"p_dev_ok": (204, ""), "p_dev_busy": (304, ""), "p_dev_gone": (404, "No such container: p_dev_gone"), "p_dev_err": (500, "boom")}

    def start(name: str) -> tuple[int, str]:
        if name == "p_dev_down":
            raise ConnectionRefusedError(111, "Connection refused")
        return answers[name]

    lines: list[str] = []
    table = _jobs(("ok", "0 2 * * *"), ("busy", "0 2 * * *"), ("gone", "0 2 * * *"), ("err", "0 2 * * *"), ("down", "0 2 * * *"), ("later", "0 3 * * *"))
    started = agent.run_due(table, minute=(19_000 * 24 + 2) * 60, start=start, log=lines.append)  # 02:00 UTC
    assert started == ["ok"]
    text = "\n".join(lines)
    assert len(lines) == 5 and "ok: started p_dev_ok (schedule '0 2 * * *')" in text
    assert "err: starting p_dev_err failed: HTTP 500 boom" in text
    assert "busy: the previous run of p_dev_busy is still going; this run is skipped" in text
    assert "gone: no container p_dev_gone" in text and "down: cannot reach the Docker engine" in text
    assert lines[0].startswith("2022-01-08T02:00:00Z ")


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A unix socket that answers like the Docker Engine API's container start."""
    requests: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append((self.command, self.path))
            name = self.path.split("/")[2]
            status, body = {"job": (204, b""), "busy": (304, b"")}.get(name, (404, json.dumps({"message": f"No such container: {name}"}).encode()))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    path = str(tmp_path / "docker.sock")
    server = _FakeEngine(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path, requests
    finally:
        server.shutdown()
        server.server_close()


def test_start_container_speaks_the_engine_api_over_the_unix_socket(fake_engine) -> None:  # type: ignore[no-untyped-def]
    path, requests = fake_engine
    assert agent.start_container("job", socket_path=path) == (204, "")
    assert agent.start_container("busy", socket_path=path) == (304, "")
    assert agent.start_container("a b", socket_path=path) == (404, "No such container: a%20b")
    assert requests == [("POST", "/containers/job/start"), ("POST", "/containers/busy/start"), ("POST", "/containers/a%20b/start")]


def test_the_agent_is_one_standard_library_file() -> None:
    """It runs alone in the scheduler container: no package imports, nothing outside the stdlib."""
    tree = ast.parse(AGENT.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported


def test_the_agent_refuses_a_bad_job_table(tmp_path: Path) -> None:
    table = tmp_path / "jobs.json"
    table.write_text(json.dumps({"jobs": [{"service": "x", "schedule": "0 0 L * *", "container": "p_dev_x"}]}))
    proc = subprocess.run([sys.executable, "-I", str(AGENT), str(table)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "cannot load the job table" in proc.stdout and "Quartz" in proc.stdout


def test_the_agent_starts_and_says_it_is_ready(tmp_path: Path, fake_engine) -> None:  # type: ignore[no-untyped-def]
    path, _ = fake_engine
    table = tmp_path / "jobs.json"
    table.write_text(json.dumps({"jobs": [{"service": "job", "schedule": "0 2 * * *", "container": "job"}]}))
    proc = subprocess.Popen([sys.executable, "-I", "-u", str(AGENT), str(table), path], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"{agent.READY}: 1 job(s), UTC: job '0 2 * * *' -> job")
        proc.terminate()  # SIGTERM: the agent stops at once (as PID 1 it would ignore it otherwise)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def _info(state: str, started: str, finished: str, code: int) -> ContainerInfo:
    return ContainerInfo(id="x", name="p_dev_job", image_id="", labels={}, state=state, health=None, exit_code=code, started_at=started, finished_at=finished)


ZERO = "0001-01-01T00:00:00Z"


def test_job_status_fields() -> None:
    up = _info("running", "2024-05-01T02:00:00.5Z", ZERO, 0)
    assert job_status(None, up)["state"] == "not deployed"
    never = job_status(_info("created", ZERO, ZERO, 0), up)
    assert never == {"state": "scheduled", "health": "never ran", "last_run": None, "last_finished": None, "exit_code": None}
    failed = job_status(_info("exited", "2024-05-01T02:00:00.5Z", "2024-05-01T02:00:03Z", 3), up)
    assert failed == {"state": "scheduled", "health": "failed", "last_run": "2024-05-01T02:00:00.5Z", "last_finished": "2024-05-01T02:00:03Z", "exit_code": 3}
    assert job_status(_info("exited", "2024-05-01T02:00:00Z", "2024-05-01T02:00:03Z", 0), up)["health"] == "ok"
    running = job_status(_info("running", "2024-05-01T03:00:00Z", "2024-05-01T02:00:03Z", 0), up)
    assert (running["health"], running["last_finished"], running["exit_code"]) == ("running", None, None)
    assert job_status(_info("exited", "2024-05-01T02:00:00Z", "2024-05-01T02:00:03Z", 0), None)["health"] == "scheduler not running"
    assert ran(ZERO) is None and ran("") is None
    assert since_epoch("2024-05-01T02:00:00.250000000Z") == pytest.approx(1714528800.25)


def test_a_job_container_has_no_slot_suffix_no_ports_and_never_restarts(tmp_path: Path) -> None:
    from projectdeployer import ProjectDeployer
    from projectdeployer.core.containers import JOB_SLOT
    from projectdeployer.core.runtime import LABEL_ROLE, LABEL_SLOT
    from projectdeployer.deploy.containers import build_container
    from projectdeployer.plugins import get_registry

    pd = ProjectDeployer.create("jobp", path=tmp_path / "p.toml")
    pd.add_python_service("report", schedule="0 2 * * *", port=8000, env_vars={"MODE": "nightly"})
    project, spec = pd.project, pd.project.service("report", "dev")
    stype = get_registry().service_types["python"]

    def container(slot: str):  # type: ignore[no-untyped-def]
        return build_container(
            project=project,
            env="dev",
            service=spec,
            stype=stype,
            parts=None,
            image="img",
            image_id="sha256:1",
            ports=pd.ports("dev")["report"],
            slot=slot,
            data_root="/local",
            resolve_secret=lambda ref: "x",
            service_types=get_registry().service_types,
        )

    job, web = container(JOB_SLOT), container("a")
    assert job.spec.name == "jobp_dev_report" and web.spec.name == "jobp_dev_report_a"
    assert job.spec.ports == {} and job.spec.restart == "no" and "PORT" not in job.spec.env
    assert job.spec.env["MODE"] == "nightly" and job.spec.network == "jobp_dev_network"
    assert job.spec.labels[LABEL_ROLE] == "job" and job.spec.labels[LABEL_SLOT] == "job"
    assert job.config_hash != web.config_hash  # no published port, no PORT variable
