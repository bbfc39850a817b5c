"""A small HTTP/1.1 client on asyncio streams, with a keep-alive connection pool.

Why asyncio streams and not http.client in a thread pool: the brief's
interfaces are coroutines, and a coroutine-native transport keeps every
request cancellable (a timeout or a caller's cancel closes the connection at
once instead of leaving a thread blocked in recv), needs no threads, and lets
thousands of coroutines share one client with the pool bounding the sockets.
HTTP/1.1 as Strata speaks it is small: one request at a time per connection,
Content-Length request bodies, Content-Length or chunked response bodies.

What it does:
  * a pool per client of at most ``max_connections`` sockets; a request waits
    for a free one (the wait counts against the request's timeout). Idle
    sockets are reused last-in first-out and dropped after ``idle_timeout``
    seconds (keep it below the server's idle timeout, 60 s by default);
  * a whole request (waiting for a socket, connecting, TLS, writing, reading
    the full body) is bounded by ``timeout`` through ``asyncio.wait_for``;
  * a reused socket that the server had already closed is detected before the
    request when possible; if it fails before any response byte arrives, an
    idempotent request (GET, HEAD, PUT, DELETE, OPTIONS) is retried once on a
    new socket. POST and PATCH are never resent: they may have been applied;
  * a socket goes back to the pool only after its response was read whole and
    neither side asked to close; anything unusual (cancel, timeout, error)
    closes it;
  * TLS through an ``ssl.SSLContext`` (verification on by default, a CA file,
    a client certificate).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import errors

__all__ = ["Response", "HTTPTransport", "make_ssl_context"]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 200
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass
class Response:
    """A complete HTTP response; header names are lower case."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    http_version: str = "HTTP/1.1"
    reused_connection: bool = field(default=False, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def make_ssl_context(
    verify: bool = True,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """An SSLContext for a client: system CAs (or ``ca_file``), optional client cert."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file, password=key_password)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _Conn:
    __slots__ = ("reader", "writer", "created", "last_used", "requests")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.created = time.monotonic()
        self.last_used = self.created
        self.requests = 0

    def usable(self, idle_timeout: float) -> bool:
        """False when the peer closed it, it errored, or it idled too long."""
        if self.writer.is_closing() or self.reader.at_eof():
            return False
        if self.reader.exception() is not None:
            return False
        # Unsolicited bytes on an idle HTTP/1.1 connection mean trouble.
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            return False
        return time.monotonic() - self.last_used < idle_timeout

    def abort(self) -> None:
        try:
            transport = self.writer.transport
            transport.abort()
        except Exception:  # noqa: BLE001 - the loop may be closed already
            pass


class _Stale(Exception):
    """A reused connection failed before any response byte arrived."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class HTTPTransport:
    """Connection pool plus request/response framing for one origin."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 10,
        idle_timeout: float = 30.0,
        connect_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError("base_url must start with http:// or https://: %r" % base_url)
        if not u.hostname:
            raise ValueError("base_url has no host: %r" % base_url)
        if u.query or u.fragment:
            raise ValueError("base_url may not have a query or fragment: %r" % base_url)
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        host_for_header = "[%s]" % self.host if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        self.host_header = (host_for_header if self.port == default_port
                            else "%s:%d" % (host_for_header, self.port))
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes
        if self.scheme == "https":
            self.ssl_context: ssl.SSLContext | None = ssl_context or make_ssl_context()
        else:
            self.ssl_context = None
        self._idle: list[_Conn] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._open = 0
        self._closed = False
        # Counters, for callers and tests that want to see the pool work.
        self.connections_opened = 0
        self.requests_sent = 0

    # ---- pool ------------------------------------------------------------
    def _bind_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._sem is None:
            # First use, or a new event loop (asyncio.run called again): sockets
            # of the old loop cannot be used here.
            for c in self._idle:
                c.abort()
            self._idle.clear()
            self._open = 0
            self._loop = loop
            self._sem = asyncio.Semaphore(self.max_connections)
        return self._sem

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _connect(self) -> _Conn:
        kwargs: dict[str, Any] = {"limit": MAX_HEAD_BYTES}
        if self.ssl_context is not None:
            kwargs["ssl"] = self.ssl_context
            kwargs["server_hostname"] = self.host
        try:
            coro = asyncio.open_connection(self.host, self.port, **kwargs)
            if self.connect_timeout is not None:
                reader, writer = await asyncio.wait_for(coro, self.connect_timeout)
            else:
                reader, writer = await coro
        except asyncio.TimeoutError as e:
            raise errors.Timeout("connecting to %s:%d took longer than %.3gs"
                                 % (self.host, self.port, self.connect_timeout or 0),
                                 code="connect_timeout") from e
        except ssl.SSLError as e:
            raise errors.ConnectionError("TLS handshake with %s:%d failed: %s"
                                         % (self.host, self.port, e), code="tls_error") from e
        except OSError as e:
            raise errors.ConnectionError("cannot connect to %s:%d: %s"
                                         % (self.host, self.port, e.strerror or e),
                                         code="connection_refused"
                                         if isinstance(e, ConnectionRefusedError)
                                         else "connect_failed") from e
        self.connections_opened += 1
        self._open += 1
        return _Conn(reader, writer)

    def _take_idle(self) -> _Conn | None:
        while self._idle:
            c = self._idle.pop()
            if c.usable(self.idle_timeout):
                return c
            self._discard(c)
        return None

    def _discard(self, c: _Conn) -> None:
        self._open = max(0, self._open - 1)
        c.abort()

    def _release(self, c: _Conn, reusable: bool) -> None:
        if reusable and not self._closed:
            c.last_used = time.monotonic()
            self._idle.append(c)
        else:
            self._discard(c)

    async def close(self) -> None:
        """Close idle sockets now; sockets in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            self._open = max(0, self._open - 1)
            try:
                c.writer.close()
            except Exception:  # noqa: BLE001
                c.abort()
        for c in idle:
            try:
                await asyncio.wait_for(c.writer.wait_closed(), 1.0)
            except BaseException:  # noqa: BLE001 - best effort
                c.abort()

    # ---- requests ----------------------------------------------------------
    def target(self, path: str, query: Iterable[tuple[str, str]] | None = None) -> str:
        t = self.prefix + path
        if query:
            qs = urllib.parse.urlencode(list(query), quote_via=urllib.parse.quote, safe=",:")
            if qs:
                t += "?" + qs
        return t

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float | None,
    ) -> Response:
        """Send one request and read the whole response, within ``timeout`` seconds."""
        if self._closed:
            raise errors.ConnectionError("the client is closed", code="client_closed")
        coro = self._request(method.upper(), target, headers, body)
        if timeout is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError as e:
            if isinstance(e, errors.Timeout):
                raise
            raise errors.Timeout("%s %s: no complete response within %.3gs"
                                 % (method, target, timeout), code="timeout") from None

    async def _request(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | None) -> Response:
        sem = self._bind_loop()
        async with sem:
            if self._closed:
                raise errors.ConnectionError("the client is closed", code="client_closed")
            head = self._encode_head(method, target, headers, body)
            conn = self._take_idle()
            if conn is not None:
                try:
                    return await self._exchange(conn, True, method, target, head, body)
                except _Stale as stale:
                    if method not in IDEMPOTENT:
                        raise self._transport_error(stale.cause, method, target) from stale.cause
                    # The server closed a kept-alive socket under us: once more, fresh.
            conn = await self._connect()
            try:
                return await self._exchange(conn, False, method, target, head, body)
            except _Stale as stale:  # not raised for a fresh connection, but be safe
                raise self._transport_error(stale.cause, method, target) from stale.cause

    def _transport_error(self, e: BaseException, method: str, target: str) -> errors.StrataError:
        if isinstance(e, errors.StrataError):
            return e
        return errors.ConnectionError("%s %s: connection to %s:%d failed: %s"
                                      % (method, target, self.host, self.port,
                                         str(e) or type(e).__name__),
                                      code="connection_lost")

    def _encode_head(self, method: str, target: str, headers: list[tuple[str, str]],
                     body: bytes | None) -> bytes:
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + self.host_header]
        names = set()
        for k, v in headers:
            if any(ch in k or ch in v for ch in "\r\n\0") or not k:
                raise ValueError("header %r has a control character" % k)
            names.add(k.lower())
            lines.append("%s: %s" % (k, v))
        if "connection" not in names:
            lines.append("Connection: keep-alive")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: %d" % (len(body) if body else 0))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(self, conn: _Conn, reused: bool, method: str, target: str,
                        head: bytes, body: bytes | None) -> Response:
        ok = False
        keep = False
        try:
            conn.requests += 1
            self.requests_sent += 1
            write_error: BaseException | None = None
            try:
                if body and len(body) < 65536:
                    conn.writer.write(head + body)  # one segment for small requests
                else:
                    conn.writer.write(head)
                    if body:
                        conn.writer.write(body)
                await conn.writer.drain()
            except (ConnectionError, OSError) as e:
                # The server may have answered (413, 400) and closed before reading
                # all we sent: try to read that answer before giving up.
                write_error = e
            try:
                resp = await self._read_response(conn, method)
            except _NoResponse as e:
                cause = write_error or e.cause or e
                if reused:
                    raise _Stale(cause) from None
                raise self._transport_error(cause, method, target) from None
            resp.reused_connection = reused
            keep = write_error is None and self._keep_alive(resp)
            ok = True
            return resp
        finally:
            self._release(conn, ok and keep)

    @staticmethod
    def _keep_alive(resp: Response) -> bool:
        tokens = {t.strip().lower() for t in resp.headers.get("connection", "").split(",")}
        if "close" in tokens:
            return False
        if resp.http_version == "HTTP/1.0":
            return "keep-alive" in tokens
        return True

    async def _read_response(self, conn: _Conn, method: str) -> Response:
        reader = conn.reader
        first = True
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as e:
                if first and not e.partial:
                    raise _NoResponse(None) from None
                raise errors.ProtocolError("the connection closed inside the response head",
                                           code="truncated_response") from None
            except asyncio.LimitOverrunError:
                raise errors.ProtocolError("response status line too long",
                                           code="bad_response") from None
            except (ConnectionError, OSError) as e:
                if first:
                    raise _NoResponse(e) from None
                raise errors.ConnectionError("connection lost reading the response: %s" % e,
                                             code="connection_lost") from e
            first = False
            status, reason, version = _parse_status_line(line)
            headers = await _read_headers(reader)
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and other interim answers
            break
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await self._read_body(reader, headers)
        return Response(status, reason, headers, body, version)

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        limit = self.max_response_bytes
        try:
            te = headers.get("transfer-encoding")
            if te is not None:
                codings = [t.strip().lower() for t in te.split(",") if t.strip()]
                if codings != ["chunked"]:
                    raise errors.ProtocolError("unsupported transfer coding %r" % te,
                                               code="bad_response")
                return await _read_chunked(reader, limit)
            cl = headers.get("content-length")
            if cl is not None:
                values = {v.strip() for v in cl.split(",")}
                if len(values) != 1 or not next(iter(values)).isdigit():
                    raise errors.ProtocolError("bad Content-Length %r" % cl, code="bad_response")
                n = int(next(iter(values)))
                if n > limit:
                    raise errors.ProtocolError("response body of %d bytes is over the limit"
                                               % n, code="response_too_large")
                return await reader.readexactly(n)
            # Neither: the body runs to the end of the connection.
            headers["connection"] = "close"
            data = await reader.read(limit + 1)
            chunks = [data]
            total = len(data)
            while data:
                if total > limit:
                    raise errors.ProtocolError("response body over the limit",
                                               code="response_too_large")
                data = await reader.read(limit + 1 - total)
                chunks.append(data)
                total += len(data)
            return b"".join(chunks)
        except asyncio.IncompleteReadError:
            raise errors.ProtocolError("the connection closed inside the response body",
                                       code="truncated_response") from None
        except asyncio.LimitOverrunError:
            raise errors.ProtocolError("chunk header too long", code="bad_response") from None
        except (ConnectionError, OSError) as e:
            if isinstance(e, errors.StrataError):
                raise
            raise errors.ConnectionError("connection lost reading the response body: %s" % e,
                                         code="connection_lost") from e


class _NoResponse(Exception):
    def __init__(self, cause: BaseException | None) -> None:
        super().__init__("the server closed the connection without answering")
        self.cause = cause


def _parse_status_line(line: bytes) -> tuple[int, str, str]:
    try:
        text = line.decode("latin-1").rstrip("\r\n")
        version, rest = text.split(" ", 1)
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ValueError
        return int(code), reason, version
    except ValueError:
        raise errors.ProtocolError("not an HTTP/1.x status line: %r" % line[:80],
                                   code="bad_response") from None


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    for _ in range(MAX_HEADERS + 1):
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError:
            raise errors.ProtocolError("the connection closed inside the response head",
                                       code="truncated_response") from None
        except asyncio.LimitOverrunError:
            raise errors.ProtocolError("response header line too long",
                                       code="bad_response") from None
        total += len(line)
        if total > MAX_HEAD_BYTES:
            raise errors.ProtocolError("response head too large", code="bad_response")
        if line == b"\r\n":
            return headers
        text = line.decode("latin-1").rstrip("\r\n")
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise errors.ProtocolError("malformed response header %r" % text[:80],
                                       code="bad_response")
        name = name.lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    raise errors.ProtocolError("too many response headers", code="bad_response")


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise errors.ProtocolError("bad chunk size %r" % line[:40],
                                       code="bad_response") from None
        if size == 0:
            break
        total += size
        if total > limit:
            raise errors.ProtocolError("response body over the limit", code="response_too_large")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise errors.ProtocolError("chunk not followed by CRLF", code="bad_response")
    # Trailers, up to the empty line; ignored.
    for _ in range(MAX_HEADERS + 1):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return b"".join(chunks)
    raise errors.ProtocolError("too many trailer lines", code="bad_response")
