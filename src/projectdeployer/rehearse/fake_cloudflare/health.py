"""Health checks: every origin of every monitored pool probed with its monitor's settings, in
a background thread, as Cloudflare's monitors do.

One check is a request (``type`` http/https: ``method`` ``path`` with the monitor's headers,
the Host header from the monitor, else the origin, else its address; answered within
``timeout`` with a status in ``expected_codes`` and ``expected_body`` in the first 10 KiB;
redirects are not followed) or, for the other types, a TCP connection to the port; a failure
is tried again at once up to ``retries`` times. An origin turns unhealthy after
``consecutive_down`` failed checks (at least one) and healthy again after ``consecutive_up``
good ones; checks run every ``interval`` seconds. A pool is healthy while it is enabled and at
least ``minimum_origins`` of its enabled origins are; a pool without a monitor is healthy.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from .balancing import LoadBalancing

#: The User-Agent Cloudflare's monitors send (the pool's id follows).
USER_AGENT = "Mozilla/5.0 (compatible; Cloudflare-Traffic-Manager/1.0; +https://www.cloudflare.com/traffic-manager/; pool-id: {})"
#: How much of a body ``expected_body`` is looked for in.
BODY_WINDOW = 10 * 1024

#: An origin's key in the checker: (pool id, address, port).
OriginKey = tuple[str, str, int]


@attrs.define
class OriginHealth:
    """What the checks say about one origin of one pool."""

    healthy: bool = True
    checked: bool = False
    failure_reason: str = "No failures"
    response_code: int | None = None
    rtt_ms: float | None = None
    ups: int = 0
    downs: int = 0
    due: float = 0.0
    busy: bool = False


def origin_key(pool_id: str, origin: Mapping[str, Any]) -> OriginKey:
    """The key of ``origin`` of the pool ``pool_id``."""
    return (pool_id, origin["address"], origin["port"])


def origin_port(origin: Mapping[str, Any], scheme: str) -> int:
    """The port requests to ``origin`` go to: its own, else the scheme's."""
    return int(origin["port"]) or (443 if scheme == "https" else 80)


def origin_host(origin: Mapping[str, Any], fallback: str) -> str:
    """The Host header an origin wants (its ``header.Host``), else ``fallback``."""
    hosts = (origin.get("header") or {}).get("Host") or []
    return str(hosts[0]) if hosts else fallback


class HealthChecker:
    """Probes the origins of :attr:`balancing`'s monitored pools while started.

    :param tick: how often due checks are looked for (seconds).
    """

    def __init__(self, balancing: LoadBalancing, *, tick: float = 0.05) -> None:
        self.balancing = balancing
        self.tick = tick
        self._states: dict[OriginKey, OriginHealth] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-cloudflare-check")
        self._thread = threading.Thread(target=self._run, name="fake-cloudflare-health", daemon=True)

    def start(self) -> None:
        """Start checking in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop checking (checks under way are not waited for)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def origin_healthy(self, pool_id: str, origin: Mapping[str, Any]) -> bool:
        """Whether the origin may get traffic (an unmonitored or unchecked origin may)."""
        with self._lock:
            state = self._states.get(origin_key(pool_id, origin))
        return state is None or state.healthy

    def pool_healthy(self, pool_id: str) -> bool | None:
        """Whether the pool may get traffic (``None``: no such pool)."""
        with self.balancing.lock:
            pool = self.balancing.pools.get(pool_id)
        if pool is None:
            return None
        if not pool["enabled"]:
            return False
        healthy = [o for o in pool["origins"] if o["enabled"] and self.origin_healthy(pool_id, o)]
        return len(healthy) >= int(pool["minimum_origins"])

    def report(self, pool_id: str) -> dict[str, Any]:
        """``GET .../pools/{id}/health``, in the shape of the SDK's ``HealthGetResponse`` (each
        origin's entry also names the origin by ``name`` and ``address``)."""
        pool = self.balancing.pool(pool_id)
        origins = []
        for origin in pool["origins"]:
            with self._lock:
                state = self._states.get(origin_key(pool_id, origin)) or OriginHealth()
            detail: dict[str, Any] = {
                "name": origin["name"],
                "address": origin["address"],
                "healthy": origin["enabled"] and state.healthy,
                "failure_reason": state.failure_reason if origin["enabled"] else "Origin disabled",
            }
            if state.response_code is not None:
                detail["response_code"] = state.response_code
            if state.rtt_ms is not None:
                detail["rtt"] = f"{state.rtt_ms:.1f}ms"
            origins.append({"ip": detail})
        return {"pool_id": pool_id, "pop_health": {"healthy": pool["healthy"], "origins": origins}}

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            with self.balancing.lock:
                pools = [dict(p) for p in self.balancing.pools.values() if p["enabled"] and p["monitor"] in self.balancing.monitors]
                monitors = {p["id"]: dict(self.balancing.monitors[p["monitor"]]) for p in pools}
            wanted: set[OriginKey] = set()
            now = time.monotonic()
            for pool in pools:
                for origin in pool["origins"]:
                    if not origin["enabled"]:
                        continue
                    key = origin_key(pool["id"], origin)
                    wanted.add(key)
                    with self._lock:
                        state = self._states.setdefault(key, OriginHealth(due=now))
                        if state.busy or state.due > now:
                            continue
                        state.busy = True
                    self._workers.submit(self._check, key, dict(origin), monitors[pool["id"]])
            with self._lock:
                # Forget origins that left their pool (or whose pool lost its monitor).
                for key in [k for k in self._states if k not in wanted]:
                    del self._states[key]

    def _check(self, key: OriginKey, origin: dict[str, Any], monitor: dict[str, Any]) -> None:
        began = time.monotonic()
        ok, reason, code = False, "", None
        for _ in range(1 + monitor["retries"]):
            ok, reason, code = probe(key[0], origin, monitor)
            if ok:
                break
        rtt = (time.monotonic() - began) * 1000
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return  # the origin left its pool while it was checked
            state.busy, state.checked, state.due = False, True, time.monotonic() + monitor["interval"]
            state.response_code, state.rtt_ms = code, rtt
            if ok:
                state.ups, state.downs, state.failure_reason = state.ups + 1, 0, "No failures"
                if not state.healthy and state.ups >= max(1, monitor["consecutive_up"]):
                    state.healthy = True
            else:
                state.ups, state.downs, state.failure_reason = 0, state.downs + 1, reason
                if state.healthy and state.downs >= max(1, monitor["consecutive_down"]):
                    state.healthy = False


def probe(pool_id: str, origin: Mapping[str, Any], monitor: Mapping[str, Any]) -> tuple[bool, str, int | None]:
    """One attempt of a check: ``(good, failure reason, response code)``."""
    scheme = monitor["type"]
    port = int(monitor["port"] or origin_port(origin, scheme if scheme in ("http", "https") else "http"))
    address, timeout = origin["address"], float(monitor["timeout"])
    if scheme not in ("http", "https"):
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except OSError as exc:
            return False, f"TCP connection failed: {exc}", None
        return True, "", None
    if scheme == "https":
        context = ssl.create_default_context()
        if monitor["allow_insecure"]:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    headers = {name: values[0] for name, values in monitor["header"].items() if values and name.lower() != "user-agent"}
    headers.setdefault("Host", origin_host(origin, address))
    headers["User-Agent"] = USER_AGENT.format(pool_id)
    try:
        connection.request(monitor["method"], monitor["path"], headers=headers)
        answer = connection.getresponse()
        body = answer.read(BODY_WINDOW)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}", None
    finally:
        connection.close()
    if not _expected(answer.status, monitor["expected_codes"]):
        return False, f"HTTP response code {answer.status} does not match expected_codes {monitor['expected_codes']}", answer.status
    if monitor["expected_body"] and monitor["expected_body"].encode() not in body:
        return False, "Response body does not contain expected_body", answer.status
    return True, "", answer.status


def _expected(status: int, codes: str) -> bool:
    for code in (c.strip() for c in codes.split(",")):
        if code.endswith("xx") and str(status)[0] == code[0]:
            return True
        if code == str(status):
            return True
    return False
