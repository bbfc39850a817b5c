"""Helpers shared by the strata_client tests (conftest.py has the fixtures).

  run(coro)        asyncio.run: tests are plain functions, no pytest-asyncio needed
  pending_route()  turns a 404 "no route" (a route the server does not serve yet)
                   into pytest.skip, naming the route
  Stratad          a real stratad on a free port (start, restart, pause, stop)
  FakeServer       a scriptable in-process HTTP/1.1 server for transport tests,
                   with read_request() and response() to build answers

Importing this module puts ../src first on sys.path, so the tests exercise
the code in the tree, not an installed copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import strata_client  # noqa: E402

T = TypeVar("T")

STRATAD = os.environ.get("STRATAD", "/work/main/build/stratad")
READY_TIMEOUT = float(os.environ.get("STRATA_TEST_READY_TIMEOUT", "20"))


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]


@contextlib.contextmanager
def pending_route() -> Iterator[None]:
    """Skip the test when the server does not serve the route yet.

    A server without the route answers 404 {"code": "not_found", "message":
    "no route for ..."}; anything else (including other 404s) goes through.
    """
    try:
        yield
    except strata_client.NotFound as e:
        if e.no_route:
            pytest.skip("stratad does not serve this route yet: %s" % e.message)
        raise


def unique(prefix: str = "id") -> str:
    return "%s-%s" % (prefix, uuid.uuid4().hex[:16])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stratad:
    """One stratad process on 127.0.0.1:<free port>."""

    def __init__(self, data_dir: str, args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args or [])
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir) or ".",
                                     os.path.basename(data_dir) + ".log")

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> "Stratad":
        last = ""
        for _ in range(5):  # a free port can be taken between probe and bind
            self.port = free_port()
            try:
                self._launch()
                return self
            except RuntimeError as e:
                last = str(e)
                self.kill()
                if "in use" not in last:
                    break
        raise RuntimeError(last)

    def restart(self) -> "Stratad":
        """Stop, then start again on the same port and data directory."""
        self.stop()
        self._launch()
        return self

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env["STRATA_EMBEDDER"] = "hash"  # the tests expect the built-in embedder
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [STRATAD, "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", self.data_dir, "--fsync", "no"] + self.args,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("stratad exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("stratad not ready after %.0fs:\n%s" % (READY_TIMEOUT,
                                                                   self.log_tail()))

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP, and wait until every thread is stopped (delivery is asynchronous)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        task_dir = "/proc/%d/task" % self.proc.pid
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                states = []
                for tid in os.listdir(task_dir):
                    with open(os.path.join(task_dir, tid, "stat")) as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                return  # no /proc here: best effort
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.005)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()




# ---- a scriptable HTTP server for transport tests ------------------------------------
class Request:
    def __init__(self, method: str, target: str, version: str, headers: dict[str, str],
                 body: bytes) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.seq_on_conn = 0   # 1 for the first request on its connection
        self.conn_no = 0       # which accepted connection (1-based)

    def __repr__(self) -> str:
        return "Request(%s %s)" % (self.method, self.target)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request (Content-Length bodies only), or None at EOF."""
    try:
        line = await reader.readuntil(b"\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    method, target, version = line.decode("latin-1").strip().split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = await reader.readuntil(b"\r\n")
        if h == b"\r\n":
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return Request(method, target, version, headers, body)


def response(status: int = 200, body: bytes | str = b"{}", headers: dict[str, str] | None = None,
             reason: str = "X", content_type: str = "application/json",
             version: str = "HTTP/1.1") -> bytes:
    """A complete response with Content-Length."""
    if isinstance(body, str):
        body = body.encode()
    hs = {"Content-Type": content_type, "Content-Length": str(len(body))}
    hs.update(headers or {})
    head = "%s %d %s\r\n" % (version, status, reason) + "".join(
        "%s: %s\r\n" % kv for kv in hs.items()) + "\r\n"
    return head.encode("latin-1") + body


Responder = Callable[[Request], Awaitable[Any]]


class FakeServer:
    """An HTTP/1.1 server on 127.0.0.1:<free port> in the test's event loop.

    ``responder(request)`` returns the raw bytes to send (or a list of byte
    strings to send with pauses, or None to close the connection without an
    answer). It records requests, connections, and the most open at once.
    """

    def __init__(self, responder: Responder, ssl: Any = None, close_after: bool = False) -> None:
        self.responder = responder
        self.ssl = ssl
        self.close_after = close_after
        self.requests: list[Request] = []
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return "%s://127.0.0.1:%d" % ("https" if self.ssl else "http", self.port)

    async def __aenter__(self) -> "FakeServer":
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._writers.add(writer)
        n_on_conn = 0
        conn_no = self.connections
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                n_on_conn += 1
                req.seq_on_conn = n_on_conn
                req.conn_no = conn_no
                self.requests.append(req)
                out = await self.responder(req)
                if out is None:
                    break
                for part in out if isinstance(out, list) else [out]:
                    writer.write(part)
                    await writer.drain()
                    if isinstance(out, list):
                        await asyncio.sleep(0.01)
                if self.close_after:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()
