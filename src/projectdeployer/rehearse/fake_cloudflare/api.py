"""The v4 routes: which path and method does what to the account, and what it answers.

Every handler takes a :class:`Request` and returns an :class:`Answer` (the envelope is the
server's job) or raises :class:`~.errors.ApiError`. Lists page the way Cloudflare does:
``page``/``per_page`` slice the items, a page past the end is empty (the SDK's auto-pagination
stops on an empty page), and ``result_info`` counts them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .balancing import LoadBalancing
from .dns import Dns, Record, hostname
from .errors import FORBIDDEN_ACCOUNT, ApiError, invalid
from .health import HealthChecker


@attrs.frozen
class Request:
    """One API request as the routes see it: ``groups`` are the path's identifiers."""

    method: str
    query: Mapping[str, list[str]]
    body: Mapping[str, Any]
    groups: tuple[str, ...]
    token: str

    def arg(self, name: str) -> str | None:
        """The first value of the query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None


@attrs.frozen
class Answer:
    """A successful answer (HTTP 200, creates included, as Cloudflare's v4): ``result`` and, for
    lists, ``result_info``."""

    result: Any
    result_info: dict[str, int] | None = None


Handler = Callable[[Request], Answer]
Routes = list[tuple[re.Pattern[str], dict[str, Handler]]]


def paged(items: list[Any], request: Request, *, default: int, smallest: int, largest: int) -> Answer:
    """One page of ``items``; ``per_page`` is kept within Cloudflare's bounds for the list."""
    try:
        page = int(float(request.arg("page") or 1))
        per_page = int(float(request.arg("per_page") or default))
    except ValueError:
        raise invalid("page and per_page must be numbers") from None
    if page < 1:
        raise invalid("page must be at least 1")
    per_page = max(smallest, min(largest, per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items), "total_pages": math.ceil(len(items) / per_page)}
    return Answer(chunk, result_info=info)


def whole(items: list[Any]) -> Answer:
    """A list Cloudflare does not page (monitors, pools, load balancers)."""
    return Answer(items, result_info={"page": 1, "per_page": max(1, len(items)), "count": len(items), "total_count": len(items), "total_pages": 1})


def answer(result: Any) -> Answer:
    """``result`` answered as is, or as an unpaged list."""
    return whole(result) if isinstance(result, list) else Answer(result)


def record_filter(request: Request) -> Callable[[Record], bool]:
    """The DNS list filters: ``type``, ``name`` (also ``name.exact``, ``.contains``,
    ``.startswith``, ``.endswith``), ``content`` (also ``content.exact``), ``proxied``."""
    kind = (request.arg("type") or "").upper() or None
    exact = request.arg("name.exact") or request.arg("name")
    name = hostname(exact) if exact else None
    contains, starts, ends = request.arg("name.contains"), request.arg("name.startswith"), request.arg("name.endswith")
    content = request.arg("content.exact") or request.arg("content")
    proxied = request.arg("proxied")

    def keep(record: Record) -> bool:
        return (
            (kind is None or record.type == kind)
            and (exact is None or record.name == name)
            and (contains is None or contains.lower() in record.name)
            and (starts is None or record.name.startswith(starts.lower()))
            and (ends is None or record.name.endswith(ends.lower()))
            and (content is None or record.content == content)
            and (proxied is None or record.proxied == (proxied == "true"))
        )

    return keep


def routes(dns: Dns, balancing: LoadBalancing, health: HealthChecker) -> Routes:
    """The v4 routes (paths relative to ``/client/v4``)."""

    def account(request: Request) -> None:
        balancing.check_enabled()
        if request.groups[0] != dns.account_id:
            raise ApiError(403, FORBIDDEN_ACCOUNT, "Unauthorized to access requested resource")

    def zones(request: Request) -> Answer:
        found = dns.find_zones(request.arg("name"))
        if request.arg("account.id"):
            found = [z for z in found if z.account_id == request.arg("account.id")]
        return paged([z.as_json() for z in found], request, default=20, smallest=5, largest=50)

    def records(request: Request) -> Answer:
        found = dns.records_of(request.groups[0], record_filter(request))
        return paged([r.as_json() for r in found], request, default=100, smallest=5, largest=5_000_000)

    def in_account(change: Callable[[Request], Any]) -> Handler:
        def handle(request: Request) -> Answer:
            account(request)
            return answer(change(request))

        return handle

    def lb(change: Callable[[Request], Any]) -> Handler:
        def handle(request: Request) -> Answer:
            balancing.check_enabled()
            return answer(change(request))

        return handle

    def all_monitors(request: Request) -> list[dict[str, Any]]:
        with balancing.lock:
            return list(balancing.monitors.values())

    zone_path, account_lb = r"/zones/([^/]+)", r"/accounts/([^/]+)/load_balancers"
    return [
        (re.compile(r"/user/tokens/verify"), {"GET": lambda r: Answer({"id": hashlib.sha256(r.token.encode()).hexdigest()[:32], "status": "active"})}),
        (
            re.compile(r"/accounts"),
            {"GET": lambda r: paged([{"id": dns.account_id, "name": dns.account_name, "type": "standard", "settings": {"enforce_twofactor": False}}], r, default=20, smallest=5, largest=50)},
        ),
        (re.compile(r"/zones"), {"GET": zones}),
        (re.compile(zone_path), {"GET": lambda r: Answer(dns.zone(r.groups[0]).as_json())}),
        (re.compile(zone_path + r"/dns_records"), {"GET": records, "POST": lambda r: Answer(dns.create(r.groups[0], r.body).as_json())}),
        (
            re.compile(zone_path + r"/dns_records/([^/]+)"),
            {
                "GET": lambda r: Answer(dns.record(*r.groups).as_json()),
                "PUT": lambda r: Answer(dns.update(r.groups[0], r.groups[1], r.body, full=True).as_json()),
                "PATCH": lambda r: Answer(dns.update(r.groups[0], r.groups[1], r.body, full=False).as_json()),
                "DELETE": lambda r: Answer({"id": dns.delete(*r.groups)}),
            },
        ),
        (re.compile(account_lb + r"/monitors"), {"GET": in_account(all_monitors), "POST": in_account(lambda r: balancing.put_monitor(r.body))}),
        (
            re.compile(account_lb + r"/monitors/([^/]+)"),
            {
                "GET": in_account(lambda r: balancing.monitor(r.groups[1])),
                "PUT": in_account(lambda r: balancing.put_monitor(r.body, r.groups[1], full=True)),
                "PATCH": in_account(lambda r: balancing.put_monitor(r.body, r.groups[1], full=False)),
                "DELETE": in_account(lambda r: {"id": balancing.delete_monitor(r.groups[1])}),
            },
        ),
        (re.compile(account_lb + r"/pools"), {"GET": in_account(lambda r: balancing.all_pools()), "POST": in_account(lambda r: balancing.put_pool(r.body))}),
        (
            re.compile(account_lb + r"/pools/([^/]+)"),
            {
                "GET": in_account(lambda r: balancing.pool(r.groups[1])),
                "PUT": in_account(lambda r: balancing.put_pool(r.body, r.groups[1], full=True)),
                "PATCH": in_account(lambda r: balancing.put_pool(r.body, r.groups[1], full=False)),
                "DELETE": in_account(lambda r: {"id": balancing.delete_pool(r.groups[1])}),
            },
        ),
        (re.compile(account_lb + r"/pools/([^/]+)/health"), {"GET": in_account(lambda r: health.report(r.groups[1]))}),
        (re.compile(zone_path + r"/load_balancers"), {"GET": lb(lambda r: balancing.balancers_of(r.groups[0])), "POST": lb(lambda r: balancing.put_balancer(r.groups[0], r.body))}),
        (
            re.compile(zone_path + r"/load_balancers/([^/]+)"),
            {
                "GET": lb(lambda r: balancing.balancer(*r.groups)),
                "PUT": lb(lambda r: balancing.put_balancer(r.groups[0], r.body, r.groups[1], full=True)),
                "PATCH": lb(lambda r: balancing.put_balancer(r.groups[0], r.body, r.groups[1], full=False)),
                "DELETE": lb(lambda r: {"id": balancing.delete_balancer(*r.groups)}),
            },
        ),
    ]
