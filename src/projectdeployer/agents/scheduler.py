"""The scheduler agent: starts a project's scheduled job containers on their cron schedules.

One scheduler container runs per project/environment on a server (``{project}_{env}_scheduler``,
label ``io.projectdeployer.role=scheduler``). The deploy copies this file — standard library
only, no package imports — next to a JSON job table into
``{data_root}/{project}/{env}/scheduler/`` and mounts that directory read-only at
``/pd-scheduler``; the container runs ``python3 -u /pd-scheduler/scheduler_agent.py
/pd-scheduler/jobs.json`` on the project's ``[images] python`` image. The deploy has already
*created* (never started) one job container per scheduled service; this agent only starts them.

What it does, and nothing more:

* reads the job table once at start-up (``{"jobs": [{"service", "schedule", "container"}]}``);
  a changed table is a new scheduler container (its config hash label changes);
* sleeps until the next minute boundary (computed afresh each time from the clock, so the
  schedule never drifts), evaluates every job's 5-field cron expression in UTC for that minute
  and starts the due job containers: ``POST /containers/{name}/start`` on the Docker Engine
  API over the unix socket ``/var/run/docker.sock`` (``http.client`` over ``AF_UNIX``);
* logs one line per start; a ``304 Not Modified`` answer means the previous run is still going:
  that run is skipped and logged, runs never overlap;
* never catches up: the minute in progress at start-up is not run (the deploy may start the
  agent late in it), and minutes the clock skipped (host suspended, clock stepped forward) are
  logged and not run late. Recreating the scheduler across a minute boundary can thus miss that
  minute's runs.

Cron syntax (the one :func:`parse_cron` accepts, which is also what project-file validation
accepts): five fields ``minute hour day-of-month month day-of-week``; each a ``,`` list of ``*``,
``*/step``, ``N``, ``A-B``, ``A-B/step`` or ``N/step`` (= ``N-max/step``); month names
``jan``..``dec`` and day names ``sun``..``sat`` (any case); day-of-week ``0``-``7`` with 0 and 7
both Sunday; aliases ``@hourly @daily @midnight @weekly @monthly @yearly @annually``. When both
day fields are restricted, a day matching *either* runs (the classic cron rule); a field counts
as unrestricted when it is ``*``, or when it covers every value and the other day field
contains a ``*`` (croniter's reading, which the tests compare against). Refused, with a reason:
seconds/years fields, Quartz's ``L``, ``W``, ``#``, ``?`` and ``H``, ranges that run backwards
(``fri-mon``) or have equal ends (``5-5``) — croniter reads those differently from Vixie cron.

Security trade-off: the Docker socket is mounted into this container, and whoever controls a
process with that socket controls the Docker engine (and so the host) — the same trade-off every
cron-in-Docker tool (ofelia, docker-crontab, ...) makes. That is why this agent is kept this
small: no dependencies, no network (its container runs with networking disabled), no input but
the read-only job table written by the deploy, and one kind of API call (start a named
container). Deploy nothing else into the scheduler container.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import re
import signal
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable

DOCKER_SOCKET = "/var/run/docker.sock"
#: The line the agent prints once its job table is loaded; the deploy waits for it.
READY = "scheduler ready"

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MONTHS = {n: i for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_NAMES = {3: _MONTHS, 4: _DAYS}
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ITEM_RE = re.compile(r"^(?:(?P<star>\*)|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?$")


class CronError(ValueError):
    """An expression the scheduler cannot run; the message says why."""


class Cron:
    """A parsed 5-field cron expression, matched minute by minute."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip(" \t")
        if text.startswith("@"):
            if text.lower() not in ALIASES:
                raise CronError(f"unknown alias '{text}' (known: {', '.join(ALIASES)})")
            text = ALIASES[text.lower()]
        fields = re.split(r"[ \t]+", text) if text else []
        if len(fields) != 5:
            raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
        sets = [_parse_field(raw, i) for i, raw in enumerate(fields)]
        fields = [f.lower() for f in fields]
        self.minutes, self.hours, self.days, self.months = (frozenset(s) for s in sets[:4])
        self.weekdays = frozenset(0 if d == 7 else d for d in sets[4])
        dom_text, dow_text = fields[2], fields[4]
        dom_star = dom_text == "*" or (len(self.days) == 31 and "*" in dow_text)
        dow_star = dow_text == "*" or (len(self.weekdays) == 7 and "*" in dom_text)
        #: Both day fields restricted: a day matching either one runs.
        self.day_or = not dom_star and not dow_star

    def matches(self, when: _dt.datetime) -> bool:
        """Whether the minute of ``when`` (read as given: pass UTC) is a run time."""
        if when.minute not in self.minutes or when.hour not in self.hours or when.month not in self.months:
            return False
        dom = when.day in self.days
        dow = when.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)

    def possible(self) -> bool:
        """Whether some day of some (leap) year matches (``0 0 30 2 *`` never does)."""
        if self.day_or:
            return True
        lengths = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
        return any(day <= lengths[month] for month in self.months for day in self.days)

    def __repr__(self) -> str:
        return f"Cron({self.expression!r})"


def _value(token: str, index: int, raw: str) -> int:
    name, low, high = _FIELDS[index]
    token = token.lower()
    if token.isdigit():
        value = int(token)
    elif token in _NAMES.get(index, {}):
        value = _NAMES[index][token]
    else:
        if re.fullmatch(r"\d*[lw]|l\d*|w\d+|h", token):
            raise CronError(_quartz(name, raw))
        kinds = {3: " or a month name (jan..dec)", 4: " or a day name (sun..sat)"}
        raise CronError(f"{name} '{token}' is not a number{kinds.get(index, '')}")
    if not low <= value <= high:
        raise CronError(f"{name} {value} is out of range {low}-{high}")
    return value


def _quartz(name: str, raw: str) -> str:
    return f"{name} '{raw}': L, W, #, ? and H (Quartz extensions) are not supported"


def _parse_field(raw: str, index: int) -> set[int]:
    name, low, high = _FIELDS[index]
    if any(c in raw for c in "#?"):
        raise CronError(_quartz(name, raw))
    values: set[int] = set()
    items = raw.split(",")
    for item in items:
        match = _ITEM_RE.match(item.lower())
        if not match:
            raise CronError(f"{name} '{item}' is not cron syntax (N, A-B, */S, A-B/S, N/S or a list of them)")
        step = int(match["step"]) if match["step"] is not None else None
        if step is not None and step < 1:
            raise CronError(f"{name} '{item}': the step must be at least 1")
        top = 6 if index == 4 else high  # "*" and "N/S" in day-of-week stop at Saturday
        if match["star"]:
            if step is None and len(items) > 1:
                raise CronError(f"{name} '{raw}': '*' cannot be part of a list")
            first, last = low, top
        else:
            first = _value(match["low"], index, item)
            if match["high"] is not None:
                last = _value(match["high"], index, item)
                if last < first:
                    upper = f"{first}-{top}" if first < top else f"{first}"
                    lower = f"{low}-{last}" if low < last else f"{low}"
                    raise CronError(f"{name} '{item}' runs backwards; write it as two ranges: {upper},{lower}")
                if last == first:
                    raise CronError(f"{name} '{item}' has equal ends; write {match['low']} instead")
            elif step is not None:
                if index == 4 and first == 7:
                    raise CronError(f"{name} '{item}': 7 (Sunday) can only end a range; write 0/{step}")
                last = top
            else:
                last = first
        values.update(range(first, last + 1, step or 1))
    return values


def parse_cron(expression: str) -> Cron:
    """The :class:`Cron` of ``expression``; :class:`CronError` says why it cannot run."""
    return Cron(expression)


# --- the Docker Engine API over the unix socket -----------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def start_container(name: str, *, socket_path: str = DOCKER_SOCKET, timeout: float = 30.0) -> tuple[int, str]:
    """``POST /containers/{name}/start``: (HTTP status, the engine's message)."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request("POST", f"/containers/{urllib.parse.quote(name, safe='')}/start", body=b"", headers={"Host": "docker"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        message = json.loads(body).get("message", "") if body.strip() else ""
    except (ValueError, AttributeError):
        message = body.strip()
    return resp.status, message


# --- the loop ------------------------------------------------------------------------------


class Job:
    def __init__(self, service: str, schedule: str, container: str) -> None:
        self.service = service
        self.schedule = schedule
        self.container = container
        self.cron = parse_cron(schedule)


def load_jobs(text: str) -> list[Job]:
    """The job table: ``{"jobs": [{"service": ..., "schedule": ..., "container": ...}]}``."""
    data = json.loads(text)
    return [Job(str(j["service"]), str(j["schedule"]), str(j["container"])) for j in data["jobs"]]


def _stamp(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_due(jobs: Iterable[Job], minute: int, start: Callable[[str], tuple[int, str]], log: Callable[[str], None]) -> list[str]:
    """Start the jobs due at ``minute`` (minutes since the epoch, UTC); the services started."""
    when = _dt.datetime.fromtimestamp(minute * 60, _dt.timezone.utc)
    started = []
    for job in jobs:
        if not job.cron.matches(when):
            continue
        try:
            status, message = start(job.container)
        except OSError as exc:
            log(f"{_stamp(minute * 60)} {job.service}: cannot reach the Docker engine: {exc}")
            continue
        if status in (200, 204):
            log(f"{_stamp(minute * 60)} {job.service}: started {job.container} (schedule '{job.schedule}')")
            started.append(job.service)
        elif status == 304:
            log(f"{_stamp(minute * 60)} {job.service}: the previous run of {job.container} is still going; this run is skipped")
        elif status == 404:
            log(f"{_stamp(minute * 60)} {job.service}: no container {job.container} (deploy again to recreate it)")
        else:
            log(f"{_stamp(minute * 60)} {job.service}: starting {job.container} failed: HTTP {status} {message}")
    return started


def run(
    jobs: list[Job],
    start: Callable[[str], tuple[int, str]],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
    minutes: int | None = None,
) -> None:
    """Evaluate the jobs once per minute boundary, forever (or for ``minutes`` boundaries)."""
    last = int(clock() // 60)  # the minute in progress now is not run: we may be late into it
    done = 0
    while minutes is None or done < minutes:
        now = clock()
        sleep(max(0.0, (int(now // 60) + 1) * 60 - now))
        minute = int(clock() // 60)
        if minute <= last:
            continue  # woke a little early, or the clock went back: wait for the next boundary
        if minute > last + 1:
            log(f"{_stamp(minute * 60)} the clock skipped {minute - last - 1} minute(s); their runs are not made up")
        last = minute
        done += 1
        run_due(jobs, minute, start, log)


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/pd-scheduler/jobs.json"
    socket_path = argv[2] if len(argv) > 2 else DOCKER_SOCKET

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        with open(path, encoding="utf-8") as fh:
            jobs = load_jobs(fh.read())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        say(f"scheduler: cannot load the job table {path}: {exc}")
        return 2
    # PID 1 ignores SIGTERM without a handler: stop at once when docker stops the container.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    say(f"{READY}: {len(jobs)} job(s), UTC: " + ", ".join(f"{j.service} '{j.schedule}' -> {j.container}" for j in jobs))
    run(jobs, lambda name: start_container(name, socket_path=socket_path), log=say)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
