"""The fake account's zones and their DNS records, validated as Cloudflare does.

A zone is made by whoever runs the fake (its constructor, ``--zone``, or ``POST /_fake/zones``),
never through the API. Records are A, AAAA, CNAME and TXT; names are full domain names inside
their zone. Several records may share a name; only the same type, name and content is a
duplicate (code 81058), and a CNAME shares its name with nothing. A TXT record at an
``_acme-challenge.`` name is handed to a :class:`TxtSink` (pebble-challtestsrv) before it is
kept, so an ACME server validating DNS-01 sees it.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

from . import fields
from .errors import (
    BAD_A_CONTENT,
    BAD_AAAA_CONTENT,
    BAD_CNAME_CONTENT,
    BAD_TTL,
    NOT_PROXIABLE,
    RECORD_CNAME_CONFLICT,
    RECORD_DUPLICATE,
    RECORD_NOT_FOUND,
    ApiError,
    invalid,
    not_found,
)

#: The record types the fake keeps, and which of them Cloudflare can proxy.
PROXIABLE = {"A": True, "AAAA": True, "CNAME": True, "TXT": False}
LABEL_RE = re.compile(r"^(\*|[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)$")
ACME_PREFIX = "_acme-challenge."


def timestamp() -> str:
    """Now, as Cloudflare writes times (``2026-01-01T05:20:00.123456Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """A Cloudflare-style identifier: 32 hex digits."""
    return uuid.uuid4().hex


def hostname(value: str) -> str | None:
    """``value`` as a lower-case domain name without its trailing dot, or ``None`` if it is not one."""
    name = value.strip().lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(LABEL_RE.match(label) for label in labels) or "*" in labels[1:]:
        return None
    return name


class TxtSink(Protocol):
    """Where ``_acme-challenge.`` TXT records go (pebble-challtestsrv's management API)."""

    def set_txt(self, host: str, value: str) -> None:
        """Add ``value`` to the TXT answers of ``host`` (a name without its trailing dot)."""

    def clear_txt(self, host: str) -> None:
        """Remove every TXT answer of ``host``."""


@attrs.define
class Zone:
    """A zone of the fake account."""

    id: str
    name: str
    account_id: str
    account_name: str
    created_on: str

    def as_json(self) -> dict[str, Any]:
        """The zone as ``GET /zones/{id}`` answers it (every field the SDK's model requires)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": None,
            "original_registrar": None,
            "original_dnshost": None,
            "vanity_name_servers": [],
            "created_on": self.created_on,
            "modified_on": self.created_on,
            "activated_on": self.created_on,
            "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3, "phishing_detected": False, "cdn_only": False, "dns_only": False, "foundation_dns": False},
            "owner": {"id": None, "type": "user", "name": None},
            "account": {"id": self.account_id, "name": self.account_name},
            "tenant": {"id": None, "name": None},
            "tenant_unit": {"id": None},
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
            "plan": {
                "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
                "name": "Free Website",
                "price": 0,
                "currency": "USD",
                "frequency": "",
                "is_subscribed": False,
                "can_subscribe": False,
                "legacy_id": "free",
                "legacy_discount": False,
                "externally_managed": False,
            },
        }


@attrs.define
class Record:
    """One DNS record."""

    id: str
    zone: Zone
    type: str
    name: str
    content: str
    ttl: int
    proxied: bool
    comment: str | None
    tags: list[str]
    created_on: str
    modified_on: str

    @property
    def acme_value(self) -> str | None:
        """The value to hand to challtestsrv, if this is an ``_acme-challenge.`` TXT record."""
        if self.type != "TXT" or not self.name.startswith(ACME_PREFIX):
            return None
        # A TXT content may be written as one quoted character-string; the DNS answer is its text.
        quoted = len(self.content) >= 2 and self.content[0] == self.content[-1] == '"'
        return self.content[1:-1] if quoted else self.content

    def as_json(self) -> dict[str, Any]:
        """The record as Cloudflare answers it (``meta`` and ``proxiable`` included)."""
        return {
            "id": self.id,
            "zone_id": self.zone.id,
            "zone_name": self.zone.name,
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "proxiable": PROXIABLE[self.type],
            "proxied": self.proxied,
            "ttl": self.ttl,
            "settings": {},
            "meta": {},
            "comment": self.comment,
            "tags": list(self.tags),
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }


class Dns:
    """The zones and DNS records of one account, behind ``lock``.

    :param txt_sink: where ``_acme-challenge.`` TXT records are handed (``None``: nowhere).
    """

    def __init__(self, account_id: str, account_name: str, lock: threading.RLock, txt_sink: TxtSink | None = None) -> None:
        self.account_id = account_id
        self.account_name = account_name
        self.lock = lock
        self.txt_sink = txt_sink
        self.zones: dict[str, Zone] = {}
        self.records: dict[str, Record] = {}

    # --- zones -------------------------------------------------------------------------------

    def add_zone(self, name: str) -> Zone:
        """Make the zone ``name`` (its existing zone if there is one)."""
        domain = hostname(name)
        if domain is None or "*" in domain or "." not in domain:
            raise invalid(f"{name!r} is not a domain name a zone can have")
        with self.lock:
            for zone in self.zones.values():
                if zone.name == domain:
                    return zone
            zone = Zone(id=new_id(), name=domain, account_id=self.account_id, account_name=self.account_name, created_on=timestamp())
            self.zones[zone.id] = zone
            return zone

    def zone(self, zone_id: str) -> Zone:
        """The zone ``zone_id`` (404 when there is none)."""
        with self.lock:
            found = self.zones.get(zone_id)
        if found is None:
            raise not_found(f"/zones/{zone_id}")
        return found

    def find_zones(self, name: str | None) -> list[Zone]:
        """The zones, all or the one named ``name``."""
        with self.lock:
            zones = list(self.zones.values())
        wanted = hostname(name) if name else None
        return [z for z in zones if name is None or z.name == wanted]

    # --- records -----------------------------------------------------------------------------

    def records_of(self, zone_id: str, matches: Callable[[Record], bool]) -> list[Record]:
        """The records of a zone that ``matches`` keeps, oldest first."""
        zone = self.zone(zone_id)
        with self.lock:
            return [r for r in self.records.values() if r.zone is zone and matches(r)]

    def record(self, zone_id: str, record_id: str) -> Record:
        """One record of a zone (404, code 81044, when there is none)."""
        zone = self.zone(zone_id)
        with self.lock:
            found = self.records.get(record_id)
        if found is None or found.zone is not zone:
            raise ApiError(404, RECORD_NOT_FOUND, "Record does not exist.")
        return found

    def create(self, zone_id: str, body: Mapping[str, Any]) -> Record:
        """``POST /zones/{id}/dns_records``."""
        zone = self.zone(zone_id)
        now = timestamp()
        with self.lock:
            record = self._validated(zone, body, Record(new_id(), zone, "", "", "", 1, False, None, [], now, now), full=True)
            self._commit(None, record)
            return record

    def update(self, zone_id: str, record_id: str, body: Mapping[str, Any], *, full: bool) -> Record:
        """``PUT`` (``full``: every field given or reset) or ``PATCH`` (the fields given; an
        omitted ``content`` is kept) of one record."""
        with self.lock:
            old = self.record(zone_id, record_id)
            record = self._validated(old.zone, body, attrs.evolve(old, modified_on=timestamp()), full=full)
            self._commit(old, record)
            return record

    def delete(self, zone_id: str, record_id: str) -> str:
        """``DELETE``: the record's id."""
        with self.lock:
            old = self.record(zone_id, record_id)
            self._commit(old, None)
            return old.id

    def _validated(self, zone: Zone, body: Mapping[str, Any], base: Record, *, full: bool) -> Record:
        kind = fields.text(body, "type", None if full else base.type)
        if kind is None:
            raise invalid("DNS Validation Error: type is required")
        kind = kind.upper()
        if kind not in PROXIABLE:
            raise invalid(f"DNS Validation Error: record type {kind!r} is not one the fake keeps ({', '.join(PROXIABLE)})")
        raw_name = fields.text(body, "name", None if full else base.name)
        if raw_name is None:
            raise invalid("DNS Validation Error: name is required")
        name = hostname(raw_name)
        if name is None or not (name == zone.name or name.endswith("." + zone.name)):
            raise invalid(f"DNS Validation Error: name {raw_name!r} is not a full domain name inside the zone {zone.name}")
        content = fields.text(body, "content", None if full else base.content)
        if not content:
            raise invalid("DNS Validation Error: content is required")
        content = _checked_content(kind, content)
        proxied = fields.boolean(body, "proxied", False if full else base.proxied)
        if proxied and not PROXIABLE[kind]:
            raise invalid("This record type cannot be proxied.", NOT_PROXIABLE)
        ttl = fields.integer(body, "ttl", 1 if full else base.ttl)
        if ttl != 1 and not 60 <= ttl <= 86400:
            raise invalid("Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.", BAD_TTL)
        comment = fields.text(body, "comment", None if full else base.comment)
        tags = fields.strings(body, "tags", [] if full else base.tags)
        # A proxied record's TTL is Cloudflare's own ("automatic").
        record = attrs.evolve(base, type=kind, name=name, content=content, ttl=1 if proxied else ttl, proxied=proxied, comment=comment, tags=tags)
        self._check_neighbours(record)
        return record

    def _check_neighbours(self, record: Record) -> None:
        for other in self.records.values():
            if other.id == record.id or other.zone is not record.zone or other.name != record.name:
                continue
            if other.type == record.type and other.content == record.content:
                raise invalid("An identical record already exists.", RECORD_DUPLICATE)
            if "CNAME" in (other.type, record.type):
                raise invalid("An A, AAAA, or CNAME record with that host already exists.", RECORD_CNAME_CONFLICT)

    def _commit(self, old: Record | None, new: Record | None) -> None:
        """Hand the change to the TXT sink, then keep it: a hand-off that fails keeps nothing."""
        if self.txt_sink is not None:
            self._hand_off(old, new)
        if old is not None:
            del self.records[old.id]
        if new is not None:
            self.records[new.id] = new

    def _hand_off(self, old: Record | None, new: Record | None) -> None:
        sink = self.txt_sink
        assert sink is not None
        if old is None and new is not None and new.acme_value is not None:
            sink.set_txt(new.name, new.acme_value)  # challtestsrv adds to a name's answers
            return
        # challtestsrv clears a name's answers all at once: clear, then put back what remains.
        for name in {r.name for r in (old, new) if r is not None and r.acme_value is not None}:
            remaining = [r for r in self.records.values() if r.name == name and r.id != (old.id if old else None)]
            if new is not None and new.name == name:
                remaining.append(new)
            sink.clear_txt(name)
            for kept in remaining:
                if kept.acme_value is not None:
                    sink.set_txt(name, kept.acme_value)


def _checked_content(kind: str, content: str) -> str:
    if kind == "A":
        try:
            return str(ipaddress.IPv4Address(content.strip()))
        except ValueError:
            raise invalid("Content for A record must be a valid IPv4 address.", BAD_A_CONTENT) from None
    if kind == "AAAA":
        try:
            return str(ipaddress.IPv6Address(content.strip()))
        except ValueError:
            raise invalid("Content for AAAA record must be a valid IPv6 address.", BAD_AAAA_CONTENT) from None
    if kind == "CNAME":
        target = hostname(content)
        if target is None or "*" in target:
            raise invalid("Content for CNAME record is invalid.", BAD_CNAME_CONTENT)
        return target
    return content
