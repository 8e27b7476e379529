"""Errors in Cloudflare's shape: an HTTP status and ``{"code", "message"}`` inside the v4
envelope (``server.py`` renders them).

Where Cloudflare publishes a code (DNS validation, duplicates, authentication, routing, rate
limits) the fake answers it; for the load-balancing errors whose codes Cloudflare does not
publish, the fake's own codes below follow its style and a client should only rely on the status.
"""

from __future__ import annotations

#: The codes the fake answers, by what went wrong.
AUTHENTICATION = 10000  # missing or unknown API token
NO_ROUTE = 7000  # no such path
METHOD_NOT_ALLOWED = 7001
NOT_FOUND = 7003  # an identifier that names nothing
FORBIDDEN_ACCOUNT = 9109  # another account's resources
MALFORMED_JSON = 6007
RATE_LIMITED = 971
VALIDATION = 1004  # a field is missing or invalid
BAD_TYPE = 1005  # a field has the wrong JSON type (answered 422)
NOT_ENTITLED = 1002  # load balancing is not part of the subscription (403)
IN_USE = 1007  # a monitor or pool still referenced (409)
NAME_TAKEN = 1008  # a load balancer already serves that hostname (409)
UPSTREAM = 1010  # the challtestsrv hand-off failed (502)
RECORD_NOT_FOUND = 81044
RECORD_DUPLICATE = 81058  # same type, name and content
RECORD_CNAME_CONFLICT = 81053  # a CNAME cannot share its name with other records
NOT_PROXIABLE = 9004
BAD_A_CONTENT = 9005
BAD_AAAA_CONTENT = 9006
BAD_CNAME_CONTENT = 9007
BAD_TTL = 9021


class ApiError(Exception):
    """An error answer: HTTP ``status``, one Cloudflare error ``{code, message}`` and any
    ``headers`` it comes with (a 429's ``Retry-After``)."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """404 for an identifier that names nothing (``what``: e.g. ``"zone 0123..."``)."""
    return ApiError(404, NOT_FOUND, f"Could not route to {what}, perhaps your object identifier is invalid?")


def invalid(message: str, code: int = VALIDATION) -> ApiError:
    """400 for a request Cloudflare would refuse as invalid."""
    return ApiError(400, code, message)


def wrong_type(field: str, expected: str) -> ApiError:
    """422 for a field of the wrong JSON type."""
    return ApiError(422, BAD_TYPE, f"{field}: expected {expected}")
