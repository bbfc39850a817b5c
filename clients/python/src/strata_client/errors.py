"""One exception hierarchy for everything a Strata call can raise.

Every error the server answers with (``{"error": {"code", "message"}}`` and a
status, API.md) becomes a :class:`StrataError` subclass chosen by the status;
``.code`` keeps the server's snake_case code and ``.message`` its text. Transport
failures are :class:`ConnectionError` (also a built-in ``ConnectionError``) and
:class:`Timeout` (also a built-in ``TimeoutError``); a response that is not
valid HTTP is :class:`ProtocolError`.

    StrataError                      .status .code .message .headers .body
    +-- BadRequest                   400
    +-- Unauthorized                 401
    +-- Forbidden                    403
    +-- NotFound                     404   .no_route: the server has no such route
    +-- MethodNotAllowed             405   .allow: the methods the path accepts
    +-- Conflict                     409
    +-- PayloadTooLarge              413
    +-- UnsupportedMediaType         415
    +-- Unprocessable                422
    +-- RateLimited                  429   .retry_after (seconds or None)
    +-- ServerError                  5xx   .retry_after (seconds or None)
    |   +-- ServiceUnavailable       503
    +-- ConnectionError              transport: refused, reset, TLS handshake, closed client
    |   +-- ProtocolError            the peer did not speak HTTP/1.1 correctly
    +-- Timeout                      no complete response within the timeout
"""

from __future__ import annotations

import builtins
import email.utils
import json
import time
from typing import Any, Mapping

__all__ = [
    "StrataError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "ConnectionError",
    "ProtocolError",
    "Timeout",
    "error_from_response",
]


class StrataError(Exception):
    """Base of every error raised by ``strata_client``.

    ``status`` is the HTTP status (``None`` for transport errors), ``code`` the
    server's snake_case error code (or a client-side one such as
    ``"connection_refused"``), ``message`` the human-readable text.
    """

    status: int | None
    code: str
    message: str
    headers: Mapping[str, str]
    body: bytes

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.body = body

    def __str__(self) -> str:
        if self.status is not None:
            return "%d %s: %s" % (self.status, self.code, self.message)
        return "%s: %s" % (self.code, self.message)

    def __repr__(self) -> str:
        return "%s(status=%r, code=%r, message=%r)" % (
            type(self).__name__, self.status, self.code, self.message)


class BadRequest(StrataError):
    """400: malformed JSON, wrong type, missing or unknown field, bad id."""


class Unauthorized(StrataError):
    """401: no API key, or one the server does not know."""


class Forbidden(StrataError):
    """403: the key may not do this (e.g. an admin route without the admin key)."""


class NotFound(StrataError):
    """404: no such resource, or (``no_route``) no such route on this server."""

    @property
    def no_route(self) -> bool:
        """True when the server does not serve the path at all (an older server)."""
        return self.code == "not_found" and self.message.startswith("no route")


class MethodNotAllowed(StrataError):
    """405: the path exists with other methods."""

    @property
    def allow(self) -> list[str]:
        value = self.headers.get("allow", "")
        return [m.strip() for m in value.split(",") if m.strip()]


class Conflict(StrataError):
    """409: e.g. a session that belongs to another user, a key that already exists."""


class PayloadTooLarge(StrataError):
    """413: the body (or a field of it) is over the server's limit."""


class UnsupportedMediaType(StrataError):
    """415: the body was not sent as application/json."""


class Unprocessable(StrataError):
    """422: well-formed but invalid: a value outside its set or range."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class RateLimited(StrataError):
    """429: slow down; ``retry_after`` says for how long (seconds) when the server does."""

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.headers)


class ServerError(StrataError):
    """5xx: the server failed; the request may or may not have been applied."""

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.headers)


class ServiceUnavailable(ServerError):
    """503: busy or shutting down; usually worth a retry after ``retry_after``."""


class ConnectionError(StrataError, builtins.ConnectionError):  # noqa: A001 - the brief's name
    """Transport failure: connection refused or reset, DNS, TLS, or a closed client."""


class ProtocolError(ConnectionError):
    """The peer answered with something that is not a valid HTTP/1.1 response."""


class Timeout(StrataError, builtins.TimeoutError):
    """No complete response within the client's timeout."""


_BY_STATUS: dict[int, type[StrataError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> StrataError:
    """The exception for an error response (status >= 400).

    ``headers`` must have lower-case names. The body is parsed as the API's error
    object when it is one; otherwise the code is ``http_<status>`` and the message
    is the start of the body text.
    """
    code = "http_%d" % status
    message = ""
    try:
        doc: Any = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        if isinstance(err.get("code"), str):
            code = err["code"]
        if isinstance(err.get("message"), str):
            message = err["message"]
    elif body:
        message = body[:500].decode("utf-8", "replace").strip()
    if not message:
        message = "HTTP %d" % status
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else StrataError
    return cls(message, status=status, code=code, headers=headers, body=body)
