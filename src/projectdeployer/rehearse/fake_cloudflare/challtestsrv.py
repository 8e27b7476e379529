"""Hand ``_acme-challenge.`` TXT records to pebble-challtestsrv, the DNS server Pebble asks
during DNS-01 validation, through its management API (``/set-txt`` and ``/clear-txt``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .errors import UPSTREAM, ApiError


class ChallTestSrv:
    """pebble-challtestsrv's management API at ``url`` (e.g. ``http://127.0.0.1:8055``), as a
    :class:`~.dns.TxtSink`. A hand-off that fails is a 502 for the API call that caused it."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def set_txt(self, host: str, value: str) -> None:
        """Add ``value`` to the TXT answers of ``host``."""
        self._post("/set-txt", {"host": f"{host}.", "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT answer of ``host``."""
        self._post("/clear-txt", {"host": f"{host}."})

    def _post(self, path: str, body: dict[str, str]) -> None:
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except (OSError, urllib.error.HTTPError) as exc:
            raise ApiError(502, UPSTREAM, f"challtestsrv at {self.url} did not take {path} for {body['host']}: {exc}") from exc
