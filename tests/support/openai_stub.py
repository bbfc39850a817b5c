#!/usr/bin/env python3
"""openai_stub.py - a tiny stand-in for an OpenAI-compatible model server.

Used by the provider unit tests (tests/unit/test_embed_http.c, test_llm_http.c)
so they can exercise the HTTP embedder and chat client without a real model
server. Python 3 standard library only.

Endpoints
  POST /v1/embeddings        {"model", "input": str | [str, ...]}
                             -> {"object": "list", "data": [{"object": "embedding",
                                 "index": i, "embedding": [...]}], "model", "usage"}
                             Vectors are deterministic: derived from sha256(text),
                             dimension from --dim, NOT normalised (the client must do it).
  POST /v1/chat/completions  -> {"choices": [{"index": 0, "message": {"role": "assistant",
                                 "content": <configured content>}, "finish_reason": "stop"}]}
  POST /control              set the behaviour for the next requests (see below); also
                             resets the counters of /stats
  GET  /stats                {"total", "embeddings", "chat", "batch_sizes": [...],
                              "last_auth", "last_model", "last_request"}

Behaviour switches, POST /control with a JSON object:
  mode         "ok" (default) | "error500" | "error429" | "error503" | "error400" | "slow"
               | "malformed" | "wrong_dim" | "ragged" | "shuffled" | "missing_index"
               | "duplicate_index" | "nan" | "fail_then_ok" | "no_choices" | "no_content"
               | "big" | "big_stream"
  count        how many model requests the mode applies to before reverting to "ok";
               0 or absent: until changed ("fail_then_ok" defaults to 1)
  content      the assistant content returned by chat completions (default "{}")
  delay_ms     the delay of "slow" (default 2000)
  retry_after  the Retry-After header of "error429"/"error503" in seconds (default 1;
               negative: no header)

Modes apply to both model endpoints. "fail_then_ok" answers 500 for `count` requests,
then "ok". "shuffled" returns rows in a random order (the "index" fields stay right).
"wrong_dim" returns rows of --dim + 1. "ragged" makes the last row one value short.
"nan" writes a NaN literal (what Python's json module emits) into the first row.
"big" pads the response with a very long string (for body-size caps, --big-mb MiB);
"big_stream" does the same without a Content-Length header (the body ends when the
connection closes), so the client cannot refuse it before reading.

Startup: binds 127.0.0.1:--port (0 = any free port) and prints "listening on PORT"
on stdout, flushed, once ready. It exits on SIGTERM, when --lifetime seconds pass
(a backstop against orphaned stubs), or when --parent-pid no longer exists.
"""

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    """Behaviour and counters shared by the handler threads, under one lock."""

    def __init__(self, dim, big_mb):
        self.lock = threading.Lock()
        self.dim = dim
        self.big_mb = big_mb
        self.mode = "ok"
        self.remaining = 0  # requests left in this mode; 0 = until changed
        self.content = "{}"
        self.delay_ms = 2000
        self.retry_after = 1
        self.reset_stats()

    def reset_stats(self):
        self.total = 0
        self.embeddings = 0
        self.chat = 0
        self.batch_sizes = []
        self.last_auth = None
        self.last_model = None
        self.last_request = None

    def next_mode(self):
        """The mode for one model request; counts it down. Caller holds lock."""
        mode = self.mode
        if self.remaining > 0:
            self.remaining -= 1
            if self.remaining == 0:
                self.mode = "ok"
        return mode


def fake_embedding(text, dim):
    """Deterministic pseudo-random vector in [-1, 1): sha256 chained as needed."""
    out = []
    seed = text.encode("utf-8", "surrogatepass")
    block = hashlib.sha256(seed).digest()
    while len(out) < dim:
        for i in range(0, len(block), 4):
            if len(out) == dim:
                break
            (u,) = struct.unpack("<I", block[i:i + 4])
            out.append(u / 2147483648.0 - 1.0)
        block = hashlib.sha256(block + seed).digest()
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "openai-stub/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep stdout/stderr quiet
        pass

    # ---- plumbing -------------------------------------------------------------
    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            return None

    def send_raw(self, status, body, ctype="application/json", headers=None, stream=False):
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if stream:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired); nothing to do

    def send_json(self, status, obj, headers=None):
        self.send_raw(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def send_error_body(self, status, message, headers=None):
        err = {"error": {"message": message, "type": "stub_error", "code": status}}
        self.send_json(status, err, headers)

    # ---- routes ---------------------------------------------------------------
    def do_GET(self):
        st = self.server.state
        if self.path == "/stats":
            with st.lock:
                body = {
                    "total": st.total,
                    "embeddings": st.embeddings,
                    "chat": st.chat,
                    "batch_sizes": list(st.batch_sizes),
                    "last_auth": st.last_auth,
                    "last_model": st.last_model,
                    "last_request": st.last_request,
                }
            self.send_json(200, body)
        else:
            self.send_error_body(404, "no route for GET " + self.path)

    def do_POST(self):
        st = self.server.state
        req = self.read_json()
        if self.path == "/control":
            if not isinstance(req, dict):
                self.send_error_body(400, "control body must be a JSON object")
                return
            with st.lock:
                st.mode = req.get("mode", "ok")
                st.remaining = int(req.get("count", 0) or 0)
                if st.mode == "fail_then_ok" and st.remaining == 0:
                    st.remaining = 1
                st.content = req.get("content", st.content)
                st.delay_ms = int(req.get("delay_ms", 2000))
                st.retry_after = int(req.get("retry_after", 1))
                st.reset_stats()
            self.send_json(200, {"ok": True})
            return
        if self.path not in ("/v1/embeddings", "/v1/chat/completions"):
            self.send_error_body(404, "no route for POST " + self.path)
            return
        is_embed = self.path == "/v1/embeddings"
        with st.lock:
            mode = st.next_mode()
            st.total += 1
            if is_embed:
                st.embeddings += 1
            else:
                st.chat += 1
            st.last_auth = self.headers.get("Authorization")
            st.last_model = req.get("model") if isinstance(req, dict) else None
            st.last_request = req
            content = st.content
            delay_ms = st.delay_ms
            retry_after = st.retry_after
        if not isinstance(req, dict):
            self.send_error_body(400, "request body is not a JSON object")
            return
        if self.common_failure(mode, delay_ms, retry_after):
            return
        if is_embed:
            self.embeddings(req, mode)
        else:
            self.chat(req, mode, content)

    def common_failure(self, mode, delay_ms, retry_after):
        """Answer the failure modes shared by both endpoints; True if answered."""
        hdrs = {"Retry-After": str(retry_after)} if retry_after >= 0 else {}
        if mode in ("error500", "fail_then_ok"):
            self.send_error_body(500, "stub: internal server error")
        elif mode == "error429":
            self.send_error_body(429, "stub: rate limit exceeded", hdrs)
        elif mode == "error503":
            self.send_error_body(503, "stub: overloaded", hdrs)
        elif mode == "error400":
            self.send_error_body(400, "stub: bad request")
        elif mode == "malformed":
            self.send_raw(200, b'{"data": [ this is not json', "application/json")
        elif mode == "slow":
            time.sleep(delay_ms / 1000.0)
            return False
        else:
            return False
        return True

    def embeddings(self, req, mode):
        st = self.server.state
        inputs = req.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            self.send_error_body(400, "'input' must be a string or a list of strings")
            return
        with st.lock:
            st.batch_sizes.append(len(inputs))
        dim = st.dim + 1 if mode == "wrong_dim" else st.dim
        rows = [{"object": "embedding", "index": i, "embedding": fake_embedding(t, dim)}
                for i, t in enumerate(inputs)]
        if mode == "ragged" and rows:
            rows[-1]["embedding"] = rows[-1]["embedding"][:-1]
        if mode == "shuffled":
            random.shuffle(rows)
            if len(rows) > 1 and all(r["index"] == i for i, r in enumerate(rows)):
                rows.reverse()  # make sure the order really differs
        if mode == "missing_index" and rows:
            del rows[len(rows) // 2]
        if mode == "duplicate_index" and len(rows) > 1:
            rows[-1]["index"] = rows[0]["index"]
        if mode == "nan" and rows:
            rows[0]["embedding"][0] = float("nan")
        body = {"object": "list", "data": rows, "model": req.get("model", ""),
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
        if mode in ("big", "big_stream"):
            body["padding"] = "x" * (st.big_mb << 20)
        # allow_nan=True (the default) writes NaN literally, as real Python servers do.
        self.send_raw(200, json.dumps(body).encode("utf-8"), stream=mode == "big_stream")

    def chat(self, req, mode, content):
        st = self.server.state
        if not isinstance(req.get("messages"), list):
            self.send_error_body(400, "'messages' must be a list")
            return
        if mode == "no_choices":
            self.send_json(200, {"id": "stub", "object": "chat.completion", "choices": []})
            return
        msg = {"role": "assistant", "content": None if mode == "no_content" else content}
        body = {"id": "chatcmpl-stub", "object": "chat.completion", "model": req.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        if mode in ("big", "big_stream"):
            body["padding"] = "x" * (st.big_mb << 20)
        self.send_raw(200, json.dumps(body).encode("utf-8"), stream=mode == "big_stream")


def watchdog(server, lifetime_s, parent_pid):
    """Stop the server when its lifetime ends or its parent process is gone."""
    deadline = time.monotonic() + lifetime_s
    while time.monotonic() < deadline:
        if parent_pid > 0:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                break
        time.sleep(0.2)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--big-mb", type=int, default=2)
    ap.add_argument("--lifetime", type=float, default=300.0)
    ap.add_argument("--parent-pid", type=int, default=0)
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.dim, args.big_mb)
    threading.Thread(target=watchdog, args=(server, args.lifetime, args.parent_pid),
                     daemon=True).start()
    print("listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
