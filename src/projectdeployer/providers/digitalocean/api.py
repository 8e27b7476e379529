"""DigitalOcean's API as the provider uses it: pydo, with the API's behaviour handled once.

- **Errors** become one line naming the operation, DigitalOcean's message, the HTTP status and
  its error id (:class:`DigitalOceanError`; :class:`DigitalOceanNotFound` for a 404). pydo
  returns some error bodies instead of raising them: those are errors here too.
- **429** is answered by waiting until the reset the ``ratelimit-reset`` header gives (each wait
  logged), within :attr:`DigitalOceanApi.rate_limit_wait` seconds in all.
- **Retries** only for calls that are safe to repeat (reads, full PUTs, deletes): a 5xx or a
  lost connection is tried again with backoff. A create is never repeated blindly: the caller
  looks the resource up by name (and tag) first and again after a failure
  (:meth:`DigitalOceanApi.create_droplet`).
- **Lists** are read to their last page (``links.pages.next``), 200 at a time; nothing is cached.
- **Actions** are polled until ``completed`` with a deadline; ``errored`` is an error.

The token is held by the client object only; pydo (azure-core) redacts the Authorization header
in its logs. ``DIGITALOCEAN_API_URL`` points the client at another endpoint (the fake in
``projectdeployer.rehearse.fake_digitalocean``): plain HTTP only on this machine's loopback, so a
token never crosses a network unencrypted.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...core.errors import ProjectDeployerError
from ...core.poll import wait_until

#: Where the API is; ``DIGITALOCEAN_API_URL`` replaces it (a fake, a proxy).
DEFAULT_API_URL = "https://api.digitalocean.com"
API_URL_ENV = "DIGITALOCEAN_API_URL"
TOKEN_ENV = "DIGITALOCEAN_API_TOKEN"
#: Items per page when reading a list (DigitalOcean's maximum).
PER_PAGE = 200


class DigitalOceanError(ProjectDeployerError):
    """A DigitalOcean API call failed; the message is one line."""

    def __init__(self, message: str, *, status: int | None = None, error_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id


class DigitalOceanNotFound(DigitalOceanError):
    """The resource does not exist (HTTP 404)."""


class _Transient(Exception):
    """A failure worth another try of a call that is safe to repeat."""


def api_url(environ: Mapping[str, str]) -> str:
    """The API's base URL: ``DIGITALOCEAN_API_URL`` or DigitalOcean's; refused when it would send
    the token in clear over a network (``http://`` to anything but a loopback address)."""
    url = (environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DigitalOceanError(f"{API_URL_ENV}={url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise DigitalOceanError(f"{API_URL_ENV}={url!r}: plain http only to this machine (127.0.0.1, ::1, localhost); use https, the API token must not cross a network in clear")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint DigitalOcean gives an SSH public key (``aa:bb:...``)."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class DigitalOceanApi:
    """The calls a deployer makes, through one pydo client.

    :param token: the API token (read, or resolved from a secret, by the caller).
    :param url: the API's base URL (see :func:`api_url`).
    :param verify: TLS verification: ``True``, or a CA bundle's path (a fake's own certificate).
    :param log: where waits and retries are told (one line each).
    :param action_interval: seconds between two looks at an action in progress.
    :param rate_limit_wait: seconds this client may spend waiting for rate limits in all.
    """

    def __init__(
        self,
        token: str,
        *,
        url: str = DEFAULT_API_URL,
        verify: bool | str = True,
        log: Callable[[str], None] = lambda line: None,
        action_interval: float = 2.0,
        rate_limit_wait: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise DigitalOceanError(f"no DigitalOcean API token: set {TOKEN_ENV} (or name a secret that holds it)")
        import pydo  # noqa: PLC0415 - deferred: pydo and azure-core (start-up: ~0.3 s)
        from azure.core.pipeline.policies import HeadersPolicy  # noqa: PLC0415 - deferred: comes with pydo

        options: dict[str, Any] = {"endpoint": url, "retry_total": 0, "connection_verify": verify}
        if url.startswith("http://"):
            # azure-core refuses to send a bearer token over http: on loopback (api_url checked
            # it) the header is sent as a plain header instead.
            options["authentication_policy"] = HeadersPolicy({"Authorization": f"Bearer {token}"})
        self.client = pydo.Client(token=token, **options)
        self.url = url
        self.log = log
        self.action_interval = action_interval
        self.rate_limit_wait = rate_limit_wait
        self._sleep = sleep
        self._clock = clock
        self._waited = 0.0

    # --- calls ---------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., Any], *args: Any, idempotent: bool = True, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with DigitalOcean's behaviour handled (see the module)."""
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError  # noqa: PLC0415 - deferred: comes with pydo

        attempt, backoff = 0, 1.0
        while True:
            attempt += 1
            try:
                try:
                    result = fn(*args, **kwargs)
                except HttpResponseError as exc:
                    if exc.status_code == 429:
                        self._wait_for_reset(what, exc)
                        attempt -= 1  # a rate limit is not a failed attempt
                        continue
                    if exc.status_code is not None and exc.status_code >= 500 and idempotent:
                        raise _Transient(_describe(exc)) from exc
                    raise self._error(what, exc) from None
                except (ServiceRequestError, ServiceResponseError) as exc:
                    if not idempotent and isinstance(exc, ServiceResponseError):
                        # Sent, but the answer was lost: it may have been done. The caller
                        # looks the resource up before anything else.
                        raise DigitalOceanError(f"DigitalOcean: {what}: the connection dropped before the answer ({_first_line(exc)})") from None
                    raise _Transient(_first_line(exc)) from exc
            except _Transient as exc:
                if attempt >= 4:
                    raise DigitalOceanError(f"DigitalOcean: {what} failed after {attempt} attempts: {exc}") from None
                self.log(f"DigitalOcean: {what}: {exc}; trying again in {backoff:g}s")
                self._sleep(backoff)
                backoff *= 2
                continue
            _raise_returned_error(what, result)
            return result

    def _wait_for_reset(self, what: str, exc: Any) -> None:
        headers = exc.response.headers if exc.response is not None else {}
        try:
            reset = float(headers.get("ratelimit-reset") or 0)
        except ValueError:
            reset = 0.0
        wait = min(max(reset - self._clock(), 1.0), 60.0)
        if self._waited + wait > self.rate_limit_wait:
            raise DigitalOceanError(f"DigitalOcean: {what}: the API rate limit is still reached after waiting {self._waited:.0f}s in all (HTTP 429 too_many_requests)") from None
        self.log(f"DigitalOcean: rate limit reached ({what}): waiting {wait:.0f}s until it resets")
        self._waited += wait
        self._sleep(wait)

    def _error(self, what: str, exc: Any) -> DigitalOceanError:
        status = exc.status_code
        try:
            body = exc.response.json() if exc.response is not None else {}
        except ValueError:
            body = {}
        error_id = body.get("id") if isinstance(body, dict) else None
        message = (body.get("message") if isinstance(body, dict) else None) or _first_line(exc)
        kind = DigitalOceanNotFound if status == 404 else DigitalOceanError
        return kind(f"DigitalOcean: {what}: {message} (HTTP {status}{' ' + error_id if error_id else ''})", status=status, error_id=error_id)

    def pages(self, what: str, fn: Callable[..., Any], key: str, **query: Any) -> list[dict[str, Any]]:
        """Every item of a list, read page by page until there is no next one."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.call(what, fn, per_page=PER_PAGE, page=page, **query)
            items.extend(answer.get(key) or [])
            following = ((answer.get("links") or {}).get("pages") or {}).get("next")
            if not following:
                return items
            page = int(parse_qs(urlsplit(following).query).get("page", [page + 1])[0])

    def wait_action(self, action_id: int, *, what: str, timeout: float = 600.0) -> dict[str, Any]:
        """Until the action completes; its final state. ``errored`` or the deadline: an error."""

        def done() -> tuple[bool, Any]:
            action = self.call(f"{what} (action {action_id})", self.client.actions.get, action_id)["action"]
            if action["status"] == "errored":
                raise DigitalOceanError(f"DigitalOcean: {what}: the {action['type']} action {action_id} errored")
            return action["status"] == "completed", action if action["status"] == "completed" else f"{action['type']} {action['status']}"

        return wait_until(done, timeout=timeout, interval=self.action_interval, what=f"DigitalOcean: {what}", error=DigitalOceanError, sleep=self._sleep)

    # --- what a deployer asks ------------------------------------------------------------------

    def droplets(self, tag: str) -> list[dict[str, Any]]:
        """Every droplet carrying ``tag``, read live."""
        return self.pages(f"list droplets tagged {tag}", self.client.droplets.list, "droplets", tag_name=tag)

    def droplet(self, droplet_id: int) -> dict[str, Any]:
        return dict(self.call(f"read droplet {droplet_id}", self.client.droplets.get, droplet_id)["droplet"])

    def create_droplet(self, body: Mapping[str, Any], *, tag: str, timeout: float = 600.0) -> dict[str, Any]:
        """The droplet ``body`` describes, active, created at most once.

        Looked up by name among the droplets tagged ``tag`` first (a retried deploy finds the one
        an interrupted one made) and again when the create's answer was lost. A create that
        errored leaves no droplet behind.
        """
        name = str(body["name"])

        def existing() -> dict[str, Any] | None:
            return next((d for d in self.droplets(tag) if d["name"] == name), None)

        found = existing()
        if found is None:
            try:
                answer = self.call(f"create droplet {name}", self.client.droplets.create, body=dict(body), idempotent=False)
            except DigitalOceanError:
                found = existing()
                if found is None:
                    raise
                self.log(f"DigitalOcean: create droplet {name}: the answer was lost but the droplet exists; using it")
            else:
                found = answer["droplet"]
                action_id = answer["links"]["actions"][0]["id"]
                try:
                    self.wait_action(action_id, what=f"create droplet {name}", timeout=timeout)
                except DigitalOceanError:
                    self._remove_failed(name, tag)
                    raise
        assert found is not None
        return self._wait_active(int(found["id"]), name, timeout)

    def _wait_active(self, droplet_id: int, name: str, timeout: float) -> dict[str, Any]:
        def active() -> tuple[bool, Any]:
            droplet = self.droplet(droplet_id)
            ready = droplet["status"] == "active" and any(n["type"] == "public" for n in droplet["networks"]["v4"])
            return ready, droplet if ready else f"status {droplet['status']}"

        return dict(wait_until(active, timeout=timeout, interval=self.action_interval, what=f"DigitalOcean: droplet {name} active", error=DigitalOceanError, sleep=self._sleep))

    def _remove_failed(self, name: str, tag: str) -> None:
        for droplet in self.droplets(tag):
            if droplet["name"] == name and droplet["status"] != "active":
                self.destroy_droplet(int(droplet["id"]))

    def destroy_droplet(self, droplet_id: int) -> None:
        """Destroy a droplet; one that is gone already is fine."""
        try:
            self.call(f"destroy droplet {droplet_id}", self.client.droplets.destroy, droplet_id)
        except DigitalOceanNotFound:
            pass

    def ensure_ssh_key(self, name: str, public_key: str) -> dict[str, Any]:
        """The account's key with ``public_key``'s fingerprint, uploaded once."""
        wanted = fingerprint(public_key)
        return self._find_or_create(
            lambda: (k for k in self.pages("list SSH keys", self.client.ssh_keys.list, "ssh_keys") if k["fingerprint"] == wanted),
            lambda: self.call(f"upload SSH key {name}", self.client.ssh_keys.create, body={"name": name, "public_key": public_key}, idempotent=False)["ssh_key"],
        )

    def ensure_vpc(self, name: str, region: str) -> dict[str, Any]:
        """The VPC named ``name`` in ``region``, created once."""

        def find() -> Iterator[dict[str, Any]]:
            for vpc in self.pages("list VPCs", self.client.vpcs.list, "vpcs"):
                if vpc["name"] == name:
                    if vpc["region"] != region:
                        raise DigitalOceanError(f"DigitalOcean: the VPC {name} is in {vpc['region']}, not {region}")
                    yield vpc

        return self._find_or_create(find, lambda: self.call(f"create VPC {name}", self.client.vpcs.create, body={"name": name, "region": region}, idempotent=False)["vpc"])

    @staticmethod
    def _find_or_create(find: Callable[[], Iterator[dict[str, Any]]], create: Callable[[], Any]) -> dict[str, Any]:
        """What ``find`` yields first, else what ``create`` makes. Two deploys may create at
        once: the one whose create fails (a name or key taken) finds the other's."""
        for found in find():
            return dict(found)
        try:
            return dict(create())
        except DigitalOceanError:
            for found in find():
                return dict(found)  # made meanwhile (another deploy)
            raise

    def put_firewall(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The firewall named ``body["name"]`` made exactly ``body``: created, or replaced whole
        (DigitalOcean's update is a full PUT: what ``body`` leaves out is removed)."""
        name = str(body["name"])
        for firewall in self.pages("list firewalls", self.client.firewalls.list, "firewalls"):
            if firewall["name"] == name:
                return dict(self.call(f"update firewall {name}", self.client.firewalls.update, firewall["id"], body=dict(body))["firewall"])
        return dict(self.call(f"create firewall {name}", self.client.firewalls.create, body=dict(body), idempotent=False)["firewall"])

    def cheapest_size(self, *, vcpus: int, memory_mb: int, region: str) -> dict[str, Any]:
        """The cheapest available size with at least ``vcpus`` and ``memory_mb`` in ``region``."""
        fitting = [s for s in self.pages("list sizes", self.client.sizes.list, "sizes") if s.get("available") and region in s.get("regions", []) and s["vcpus"] >= vcpus and s["memory"] >= memory_mb]
        if not fitting:
            raise DigitalOceanError(f"DigitalOcean: no size with {vcpus} vCPU(s) and {memory_mb} MB is available in {region}")
        return min(fitting, key=lambda s: (s["price_monthly"], s["vcpus"], s["memory"]))


def _raise_returned_error(what: str, result: Any) -> None:
    """pydo hands some error bodies back instead of raising (a 404 from ``droplets.get``)."""
    if isinstance(result, dict) and isinstance(result.get("id"), str) and "message" in result and len(result) <= 3:
        kind = DigitalOceanNotFound if result["id"] == "not_found" else DigitalOceanError
        raise kind(f"DigitalOcean: {what}: {result['message']} ({result['id']})", error_id=result["id"])


def _describe(exc: Any) -> str:
    try:
        body = exc.response.json()
        return f"HTTP {exc.status_code}: {body.get('message')}"
    except (ValueError, AttributeError):
        return f"HTTP {exc.status_code}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
