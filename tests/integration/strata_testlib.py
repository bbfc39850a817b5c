"""Shared helpers for the stratad integration tests (standard library only).

What is here:

  * ``StratadServer``: launches the real ``stratad`` binary on a free port in a
    data directory, waits until ``GET /healthz`` answers, and stops it (SIGTERM,
    then SIGKILL if it hangs). It can be restarted on the same data directory,
    and killed with SIGKILL to simulate a crash. Its stderr goes to a file so a
    failing test can show the server's last words.
  * ``Client``: a small HTTP/1.1 client over ``http.client`` that keeps one
    connection alive across requests (and can tell whether it did).
  * ``raw_request``: send arbitrary bytes on a fresh socket and read the reply,
    for input ``http.client`` refuses to produce (bad request lines, huge
    headers, Expect: 100-continue, partial requests...).
  * ``run_cli``: run the ``strata`` CLI.

Binary paths come from the environment: ``STRATAD`` (default
``/work/main/build/stratad``) and ``STRATA_CLI`` (default
``/work/main/build/strata``); CTest sets both.
"""

import errno
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid

DEFAULT_BUILD = os.path.join(
    os.environ.get("STRATA_SOURCE_DIR", "/work/main"), "build")
STRATAD = os.environ.get("STRATAD", os.path.join(DEFAULT_BUILD, "stratad"))
STRATA_CLI = os.environ.get("STRATA_CLI", os.path.join(DEFAULT_BUILD, "strata"))

# Seconds we give the server to become ready / to exit after SIGTERM.
READY_TIMEOUT_S = float(os.environ.get("STRATA_TEST_READY_TIMEOUT", "20"))
STOP_TIMEOUT_S = float(os.environ.get("STRATA_TEST_STOP_TIMEOUT", "15"))
# Socket timeout of the test clients: a hung server fails a test, not the run.
HTTP_TIMEOUT_S = float(os.environ.get("STRATA_TEST_HTTP_TIMEOUT", "15"))

ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def unique_id(prefix="s"):
    """A fresh id valid for sessions/users/keys ([A-Za-z0-9_.:@-])."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:16])


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerDied(RuntimeError):
    pass


class StratadServer:
    """One stratad process (and its successors after restarts).

    args: extra command-line arguments (list of str) appended after the
    standard ones (--host, --port, --data-dir). env: extra environment
    variables. Every inherited STRATA_* variable is removed first so the
    caller's shell cannot change what a test means.
    """

    def __init__(self, data_dir, args=None, env=None, port=None, host="127.0.0.1",
                 binary=None, log_dir=None, pass_port=True, pass_data_dir=True):
        self.binary = binary or STRATAD
        self.data_dir = str(data_dir)
        self.args = list(args or [])
        self.extra_env = dict(env or {})
        self.host = host
        self.port = port or free_port(host)
        self.pass_port = pass_port
        self.pass_data_dir = pass_data_dir
        self.log_dir = str(log_dir or data_dir)
        self.proc = None
        self.starts = 0
        self.log_path = None
        self.log_paths = []
        self.exit_codes = []     # return codes of previous incarnations

    # ---- lifecycle -------------------------------------------------------
    def command(self):
        cmd = [self.binary, "--host", self.host]
        if self.pass_port:
            cmd += ["--port", str(self.port)]
        if self.pass_data_dir:
            cmd += ["--data-dir", self.data_dir]
        return cmd + self.args

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        # The tests' expectations (duplicates, rankings) are those of the
        # built-in hashing embedder; the default "auto" would pick the neural
        # one whenever its model happens to be reachable from the cwd.
        env["STRATA_EMBEDDER"] = "hash"
        env.update(self.extra_env)
        return env

    def start(self, wait=True):
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        os.makedirs(self.log_dir, exist_ok=True)
        self.starts += 1
        self.log_path = os.path.join(self.log_dir, "stratad.%d.log" % self.starts)
        self.log_paths.append(self.log_path)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.environment(),
                start_new_session=True)
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, all_runs=False):
        paths = self.log_paths if all_runs else ([self.log_path] if self.log_path else [])
        out = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Poll GET /healthz until it answers 200; fail fast if the process dies."""
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)   # reported here, not again at teardown
                raise ServerDied("stratad exited with %s before becoming ready:\n%s"
                                 % (rc, self.log_tail()))
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        return self
                    last_err = "status %d" % resp.status
                finally:
                    conn.close()
            except OSError as e:
                last_err = e
            except http.client.HTTPException as e:
                last_err = e
            time.sleep(0.02)
        self.kill()
        raise TimeoutError("stratad not ready after %.1fs (%s):\n%s"
                           % (timeout, last_err, self.log_tail()))

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append("hung-after-SIGTERM")
                return "hung-after-SIGTERM"
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        return rc

    def kill(self):
        """SIGKILL (a crash, as far as the data directory can tell)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        return rc

    def restart(self, graceful=True, new_port=False):
        """Stop (SIGTERM or SIGKILL) and start again on the same data dir."""
        rc = self.stop() if graceful else self.kill()
        if new_port:
            self.port = free_port(self.host)
        try:
            self.start()
        except ServerDied:
            # The old port may still be held (rare): try once on a new one.
            self.port = free_port(self.host)
            self.start()
        return rc

    def client(self, **kw):
        return Client(self.host, self.port, **kw)


class Response:
    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = headers       # list of (name, value)
        self.body = body             # bytes
        self.reason = reason
        self._json = None

    def header(self, name, default=None):
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return default

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise AssertionError("response body is not JSON (%s): %r"
                                     % (e, self.body[:500]))
        return self._json

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}


class Client:
    """HTTP/1.1 client keeping one connection alive across requests.

    ``connections`` counts how many TCP connections this client opened, so a
    test can check that many requests went over one of them.
    """

    def __init__(self, host, port, timeout=HTTP_TIMEOUT_S):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.connections = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()
        self.connections += 1

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def local_port(self):
        if self.conn is None or self.conn.sock is None:
            return None
        return self.conn.sock.getsockname()[1]

    def request(self, method, path, body=None, json_body=None, headers=None,
                content_type="application/json", retry=None):
        """Send one request, return a Response.

        body: bytes/str sent as is; json_body: an object serialised to JSON.
        content_type=None sends no Content-Type header. A request that fails
        on a reused connection before any answer (the server closed it while
        idle) is retried once on a new connection when idempotent, or when
        retry=True; never for POST by default, so a turn is never sent twice
        behind the test's back.
        """
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = {}
        if body is not None and content_type is not None:
            hdrs["Content-Type"] = content_type
        if headers:
            hdrs.update(headers)
        if retry is None:
            retry = method.upper() in IDEMPOTENT
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, http.client.BadStatusLine) as e:
                self.close()
                if attempt == 0 and reused and retry:
                    continue
                raise
            except Exception:
                self.close()
                raise
            out = Response(resp.status, resp.getheaders(), data, resp.reason)
            if resp.will_close:
                self.close()
            return out
        raise AssertionError("unreachable")

    # ---- shorthands ------------------------------------------------------
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, obj=None, **kw):
        if obj is not None:
            kw["json_body"] = obj
        return self.request("POST", path, **kw)

    def put(self, path, obj=None, **kw):
        if obj is not None:
            kw["json_body"] = obj
        return self.request("PUT", path, **kw)

    def patch(self, path, obj=None, **kw):
        if obj is not None:
            kw["json_body"] = obj
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # ---- Strata routes -----------------------------------------------------
    def add_turn(self, sid, user_id, content, role="user", **kw):
        return self.post("/v1/sessions/%s/turns" % sid,
                         {"user_id": user_id, "role": role, "content": content}, **kw)

    def get_session(self, sid):
        return self.get("/v1/sessions/%s" % sid)

    def set_stage(self, sid, stage):
        return self.patch("/v1/sessions/%s/state" % sid, {"current_stage": stage})

    def end_session(self, sid):
        return self.post("/v1/sessions/%s/end" % sid)

    def get_job(self, job_id):
        return self.get("/v1/jobs/%s" % job_id)

    def dirty(self, uid):
        return self.get("/v1/users/%s/dirty" % uid)

    def kv_put(self, tier, key, value):
        return self.put("/v1/kv/%s/%s" % (tier, key), json_body=None,
                        body=json.dumps(value).encode("utf-8"))

    def kv_get(self, tier, key):
        return self.get("/v1/kv/%s/%s" % (tier, key))

    def metrics(self):
        return self.get("/metrics")


# ---- assertions --------------------------------------------------------------
def assert_error(resp, statuses, code=None):
    """resp has one of `statuses` and the body {"error": {"code", "message"}}."""
    if isinstance(statuses, int):
        statuses = (statuses,)
    assert resp.status in statuses, "expected %s, got %d: %r" % (statuses, resp.status,
                                                                  resp.body[:500])
    ctype = resp.header("Content-Type", "")
    assert ctype.startswith("application/json"), "error Content-Type %r" % ctype
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("code"), str) and re.match(r"^[a-z][a-z0-9_]*$", err["code"]), err
    assert isinstance(err.get("message"), str) and err["message"], err
    if code is not None:
        codes = (code,) if isinstance(code, str) else tuple(code)
        assert err["code"] in codes, "error code %r, expected %s" % (err["code"], codes)
    return err


def session_snapshot(client, sid):
    """(status, parsed body or None) of GET /v1/sessions/{sid}: a before/after probe."""
    r = client.get_session(sid)
    return r.status, (r.json() if r.status == 200 else None)


# ---- raw sockets ---------------------------------------------------------------
def raw_request(host, port, data, timeout=5.0, read_all=False, pieces=None, delay=0.0):
    """Send bytes on a new connection and return (status or None, raw reply bytes).

    pieces: if set, send data in pieces of that size with `delay` between them.
    Reads until the server closes, or (read_all=False) until one complete
    response has arrived, or timeout. Send errors (the server answered and
    closed early, e.g. 413) are tolerated: the reply is still read.
    """
    s = socket.create_connection((host, port), timeout=timeout)
    reply = b""
    try:
        try:
            if pieces:
                for i in range(0, len(data), pieces):
                    s.sendall(data[i:i + pieces])
                    if delay:
                        time.sleep(delay)
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
            if not read_all and _complete_response(reply):
                break
    finally:
        s.close()
    return parse_status(reply), reply


def _complete_response(buf):
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", buf[:head_end])
    if m is None:
        return True
    return len(buf) >= head_end + 4 + int(m.group(1))


def parse_status(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(m.group(1)) if m else None


def split_reply(reply):
    """(status, headers dict lower-cased, body bytes) of a raw reply."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return parse_status(reply), headers, body


def connection_closed(sock, timeout=5.0):
    """True if the peer closes `sock` within timeout (reads and discards data)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            raise
        if not chunk:
            return True
    return False


# ---- CLI -------------------------------------------------------------------------
def run_cli(args, url=None, json_out=False, timeout=30, env=None):
    """Run the strata CLI; returns subprocess.CompletedProcess (text mode)."""
    cmd = [STRATA_CLI]
    if url is not None:
        cmd += ["--url", url]
    if json_out:
        cmd.append("--json")
    cmd += list(args)
    e = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    if env:
        e.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


# ---- metrics -----------------------------------------------------------------------
METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|NaN|\+Inf|-Inf))'
    r'(\s+-?\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Parse Prometheus text format into a list of (name, labels dict, float).

    Raises AssertionError on a line that is neither a comment, blank, nor a
    well-formed sample.
    """
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line.strip())
        assert m, "malformed metrics line: %r" % line
        name, labels_s, value = m.group(1), m.group(2), m.group(3)
        labels = dict(LABEL.findall(labels_s or ""))
        out.append((name, labels, float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))))
    return out


def metric_sum(samples, name):
    return sum(v for n, _, v in samples if n == name)
