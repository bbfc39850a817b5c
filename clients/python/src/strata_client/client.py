"""StrataClient: the connection to one stratad, shared by every tier object.

It owns the options (base URL, API key, timeouts, TLS, pool size) and the
keep-alive pool, turns JSON in and out, and maps error answers onto the
exception hierarchy of :mod:`strata_client.errors`. The tier classes
(:mod:`strata_client.stores`) and :class:`~strata_client.MemoryOrchestrator`
are thin typed layers over :meth:`StrataClient.call`.
"""

from __future__ import annotations

import json
import math
import ssl
import urllib.parse
from typing import Any, Iterable, Mapping, Sequence

from . import errors
from ._http import HTTPTransport, Response, make_ssl_context
from .models import ApiKey

__all__ = ["StrataClient", "DEFAULT_BASE_URL", "quote_id", "check_id"]

DEFAULT_BASE_URL = "http://127.0.0.1:7700"
USER_AGENT = "strata-client-python/0.1.0"

_UNSET: Any = object()


def quote_id(value: str, what: str = "id") -> str:
    """Percent-encode one path segment (every byte outside unreserved is escaped)."""
    check_id(value, what)
    return urllib.parse.quote(value, safe="")


def check_id(value: Any, what: str = "id") -> None:
    """Reject what cannot be a path segment at all before it is sent.

    The server validates ids itself (1-128 bytes of [A-Za-z0-9_.:@-]) and
    answers 400; only what would change the route's meaning (not a string,
    empty) is refused here, with the same :class:`~strata_client.BadRequest`.
    """
    if not isinstance(value, str):
        raise errors.BadRequest("%s must be a string, not %s" % (what, type(value).__name__),
                                status=400, code="invalid_id")
    if value == "":
        raise errors.BadRequest("%s must not be empty" % what, status=400, code="invalid_id")


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    except ValueError as e:  # NaN or infinity
        raise ValueError("the body is not valid JSON: %s" % e) from None


class StrataClient:
    """An async client for one stratad.

    Options:
      base_url         ``http://host:port`` or ``https://host:port`` (a path prefix is kept)
      api_key          sent as ``Authorization: Bearer <api_key>``
      timeout          seconds for a whole request: waiting for a pooled socket,
                       connecting, TLS, sending and reading the full answer
                       (``None``: no limit)
      connect_timeout  seconds for the TCP connect and TLS handshake alone
      max_connections  sockets kept open at most; more concurrent requests wait
      idle_timeout     seconds an idle pooled socket is kept
      verify           verify the server's TLS certificate (https only)
      ca_file          CA bundle (PEM) to verify the server against
      cert_file, key_file, key_password   a client certificate for mutual TLS
      ssl_context      a ready ``ssl.SSLContext`` (overrides the TLS options)
      headers          extra headers sent with every request

    Use as ``async with StrataClient(...) as client:`` or call :meth:`close`.
    One client can be shared by any number of coroutines on one event loop.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
        max_connections: int = 10,
        idle_timeout: float = 30.0,
        verify: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        key_password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if timeout is not None and (timeout <= 0 or math.isnan(timeout)):
            raise ValueError("timeout must be positive or None")
        if api_key is not None and any(c in api_key for c in "\r\n\0"):
            raise ValueError("api_key has a control character")
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        ctx = ssl_context
        if ctx is None and base_url.lower().startswith("https:"):
            ctx = make_ssl_context(verify, ca_file, cert_file, key_file, key_password)
        self._transport = HTTPTransport(
            base_url,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            connect_timeout=connect_timeout,
            ssl_context=ctx,
            max_response_bytes=max_response_bytes,
        )
        self._headers: list[tuple[str, str]] = [("User-Agent", USER_AGENT),
                                                ("Accept", "application/json")]
        if api_key is not None:
            self._headers.append(("Authorization", "Bearer " + api_key))
        for k, v in (headers or {}).items():
            self._headers.append((k, v))

    # ---- lifecycle ---------------------------------------------------------
    async def __aenter__(self) -> "StrataClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections. The client cannot be used afterwards."""
        await self._transport.close()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def transport(self) -> HTTPTransport:
        """The connection pool (counters: ``connections_opened``, ``requests_sent``)."""
        return self._transport

    def __repr__(self) -> str:
        return "StrataClient(%r)" % self.base_url

    # ---- raw requests --------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = _UNSET,
        body: bytes | None = None,
        content_type: str | None = None,
        query: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = _UNSET,
    ) -> Response:
        """Send one request; return the response whatever its status.

        ``path`` starts with ``/`` and must already be percent-encoded. Give
        either ``json_body`` (encoded as JSON) or raw ``body`` bytes.
        """
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        hdrs = list(self._headers)
        if json_body is not _UNSET:
            if body is not None:
                raise ValueError("give json_body or body, not both")
            body = _dumps(json_body)
            content_type = content_type or "application/json"
        if body is not None and content_type:
            hdrs.append(("Content-Type", content_type))
        for k, v in (headers or {}).items():
            hdrs = [(hk, hv) for hk, hv in hdrs if hk.lower() != k.lower()]
            hdrs.append((k, v))
        q: list[tuple[str, str]] = []
        if query:
            items = query.items() if isinstance(query, Mapping) else query
            for k, v in items:
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "true" if v else "false"
                q.append((k, str(v)))
        target = self._transport.target(path, q)
        t = self.timeout if timeout is _UNSET else timeout
        return await self._transport.request(method, target, hdrs, body, t)

    async def call(
        self,
        method: str,
        path: str,
        json_body: Any = _UNSET,
        *,
        query: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None,
        expect: Sequence[int] = (200, 201, 202, 204),
        timeout: float | None = _UNSET,
    ) -> Any:
        """Send a request and return its parsed JSON body (``None`` when empty).

        A status outside ``expect`` raises the matching :class:`StrataError`.
        """
        resp = await self.request(method, path, json_body=json_body, query=query,
                                  timeout=timeout)
        return self._parse(resp, expect)

    async def call_status(
        self,
        method: str,
        path: str,
        json_body: Any = _UNSET,
        *,
        query: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None,
        expect: Sequence[int] = (200, 201, 202, 204),
    ) -> tuple[int, Any]:
        """Like :meth:`call`, also returning the status (200 vs 201 tells update/create)."""
        resp = await self.request(method, path, json_body=json_body, query=query)
        return resp.status, self._parse(resp, expect)

    @staticmethod
    def _parse(resp: Response, expect: Sequence[int]) -> Any:
        if resp.status >= 400 or resp.status not in expect:
            if resp.status < 400:
                raise errors.StrataError("unexpected status %d" % resp.status,
                                         status=resp.status, code="unexpected_status",
                                         headers=resp.headers, body=resp.body)
            raise errors.error_from_response(resp.status, resp.headers, resp.body)
        if not resp.body:
            return None
        try:
            return json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise errors.ProtocolError("the server's answer is not JSON: %s" % e,
                                       code="bad_json") from None

    # ---- health and metrics ---------------------------------------------------
    async def healthz(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", ...}``."""
        doc = await self.call("GET", "/healthz")
        return doc if isinstance(doc, dict) else {}

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        resp = await self.request("GET", "/metrics")
        self._parse_text(resp)
        return resp.text()

    async def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample of ``/metrics`` (summed when several match)."""
        return parse_metric(await self.metrics(), name, labels)

    @staticmethod
    def _parse_text(resp: Response) -> None:
        if resp.status >= 400:
            raise errors.error_from_response(resp.status, resp.headers, resp.body)

    # ---- generic store (PUT/GET/DELETE /v1/kv/{tier}/{key}) -------------------------
    async def kv_get(self, tier: str, key: str, default: Any = None) -> Any:
        """The JSON stored under ``key`` in ``tier``, or ``default`` when absent."""
        path = "/v1/kv/%s/%s" % (quote_id(tier, "tier"), quote_id(key, "key"))
        resp = await self.request("GET", path)
        if resp.status == 404:
            err = errors.error_from_response(resp.status, resp.headers, resp.body)
            if isinstance(err, errors.NotFound) and not err.no_route:
                return default
            raise err
        return self._parse(resp, (200,))

    async def kv_put(self, tier: str, key: str, value: Any) -> Any:
        """Store ``value`` (any JSON) under ``key``; returns the canonical stored value."""
        path = "/v1/kv/%s/%s" % (quote_id(tier, "tier"), quote_id(key, "key"))
        doc = await self.call("PUT", path, value, expect=(200, 201))
        return doc.get("value") if isinstance(doc, dict) else None

    async def kv_delete(self, tier: str, key: str) -> bool:
        """Remove ``key``; False when it was not there."""
        path = "/v1/kv/%s/%s" % (quote_id(tier, "tier"), quote_id(key, "key"))
        try:
            await self.call("DELETE", path, expect=(200, 204))
        except errors.NotFound as e:
            if e.no_route:
                raise
            return False
        return True

    # ---- tenants and keys (admin key only) --------------------------------------
    async def create_key(self, tenant_id: str) -> ApiKey:
        """``POST /v1/admin/tenants/{tenant_id}/keys``: a new key (shown once)."""
        doc = await self.call("POST", "/v1/admin/tenants/%s/keys"
                              % quote_id(tenant_id, "tenant_id"), expect=(200, 201))
        return ApiKey.from_json(doc, tenant_id)

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        """``GET /v1/admin/tenants/{tenant_id}/keys``: the tenant's key ids."""
        doc = await self.call("GET", "/v1/admin/tenants/%s/keys"
                              % quote_id(tenant_id, "tenant_id"))
        items: Any = doc
        if isinstance(doc, dict):
            for k in ("keys", "key_ids", "items"):
                if isinstance(doc.get(k), list):
                    items = doc[k]
                    break
        if not isinstance(items, list):
            return []
        return [ApiKey.from_json(x, tenant_id) for x in items]

    async def delete_key(self, key_id: str) -> None:
        """``DELETE /v1/admin/keys/{key_id}``: revoke a key."""
        await self.call("DELETE", "/v1/admin/keys/%s" % quote_id(key_id, "key_id"),
                        expect=(200, 204))


def parse_metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """Sum of the samples of metric ``name`` in Prometheus text whose labels include ``labels``."""
    total = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels:
            got = dict(_parse_labels(label_text.rstrip("}")))
            if any(got.get(k) != v for k, v in labels.items()):
                continue
        try:
            v = float(value)
        except ValueError:
            continue
        total = v if total is None else total + v
    return total


def _parse_labels(text: str) -> list[tuple[str, str]]:
    out = []
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lstrip(",").strip()
        j = eq + 1
        if j >= len(text) or text[j] != '"':
            break
        j += 1
        buf = []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                j += 1
                buf.append({"n": "\n"}.get(text[j], text[j]))
            else:
                buf.append(text[j])
            j += 1
        out.append((key, "".join(buf)))
        i = j + 1
    return out
