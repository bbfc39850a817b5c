"""The exception hierarchy and error_from_response, without a server."""

from __future__ import annotations

import builtins
import email.utils
import json
import time

import pytest

import client_testlib  # noqa: F401  (puts ../src on sys.path)

import strata_client as sc
from strata_client.errors import error_from_response


def body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize("status, cls", [
    (400, sc.BadRequest), (401, sc.Unauthorized), (403, sc.Forbidden), (404, sc.NotFound),
    (405, sc.MethodNotAllowed), (409, sc.Conflict), (413, sc.PayloadTooLarge),
    (415, sc.UnsupportedMediaType), (422, sc.Unprocessable), (429, sc.RateLimited),
    (500, sc.ServerError), (501, sc.ServerError), (502, sc.ServerError),
    (503, sc.ServiceUnavailable), (504, sc.ServerError), (408, sc.StrataError),
    (431, sc.StrataError),
])
def test_status_to_class(status: int, cls: type) -> None:
    e = error_from_response(status, {}, body("some_code", "some message"))
    assert type(e) is cls
    assert isinstance(e, sc.StrataError)
    assert (e.status, e.code, e.message) == (status, "some_code", "some message")
    assert str(e) == "%d some_code: some message" % status


def test_hierarchy() -> None:
    assert issubclass(sc.ServiceUnavailable, sc.ServerError)
    assert issubclass(sc.ProtocolError, sc.ConnectionError)
    assert issubclass(sc.ConnectionError, builtins.ConnectionError)
    assert issubclass(sc.Timeout, builtins.TimeoutError)
    for cls in (sc.ConnectionError, sc.Timeout, sc.ProtocolError, sc.BadRequest):
        assert issubclass(cls, sc.StrataError)


def test_no_route_tells_missing_route_from_missing_thing() -> None:
    e = error_from_response(404, {}, body("not_found", "no route for /v1/x"))
    assert isinstance(e, sc.NotFound) and e.no_route
    e = error_from_response(404, {}, body("not_found", "no session s1"))
    assert isinstance(e, sc.NotFound) and not e.no_route


def test_retry_after_seconds_and_date() -> None:
    e = error_from_response(429, {"retry-after": "3"}, b"")
    assert isinstance(e, sc.RateLimited) and e.retry_after == 3.0
    assert e.code == "http_429" and e.message == "HTTP 429"
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    e = error_from_response(503, {"retry-after": when}, b"")
    assert isinstance(e, sc.ServiceUnavailable)
    assert e.retry_after is not None and 50 < e.retry_after <= 61
    assert error_from_response(429, {"retry-after": "soon"}, b"").retry_after is None
    assert error_from_response(429, {}, b"").retry_after is None


def test_allow_header() -> None:
    e = error_from_response(405, {"allow": "GET, DELETE"}, body("method_not_allowed", "x"))
    assert isinstance(e, sc.MethodNotAllowed) and e.allow == ["GET", "DELETE"]


def test_odd_bodies() -> None:
    e = error_from_response(500, {}, b"\xff\xfe not utf-8")
    assert e.code == "http_500" and e.message
    e = error_from_response(400, {}, b'{"error": "flat"}')
    assert e.code == "http_400"
    e = error_from_response(400, {}, b'[1,2]')
    assert e.code == "http_400" and e.message == "[1,2]"
