"""Bad input of every kind: each is rejected with the right status and the
error body, and changes nothing (checked before/after). The server must stay
up through all of it."""

import json
import random
import socket

import pytest

import strata_testlib as tl

OWNER = "owner-1"


@pytest.fixture
def probe(client):
    """An existing session S (one turn) and an unused id N; `check()` asserts
    that neither, nor the session count, changed."""
    s = tl.unique_id("S")
    n = tl.unique_id("N")
    assert client.add_turn(s, OWNER, "original").status == 201

    def sessions_gauge():
        return tl.metric_sum(tl.parse_metrics(client.metrics().body.decode()),
                             "strata_l1_sessions")

    before = (tl.session_snapshot(client, s), tl.session_snapshot(client, n),
              client.dirty(OWNER).json(), sessions_gauge())

    class P:
        sid = s
        new = n

        @staticmethod
        def check():
            after = (tl.session_snapshot(client, s), tl.session_snapshot(client, n),
                     client.dirty(OWNER).json(), sessions_gauge())
            assert after == before, "a rejected request changed state"
            assert client.get("/healthz").status == 200

    return P


def good(**over):
    body = {"user_id": OWNER, "role": "user", "content": "hello"}
    body.update(over)
    return body


def without(key):
    body = good()
    del body[key]
    return body


SEMANTIC = (400, 422)

# (id, body: dict -> JSON, or bytes as is; accepted statuses; required code or None)
TURN_CASES = [
    ("missing-user_id", without("user_id"), (400,), None),
    ("missing-role", without("role"), (400,), None),
    ("missing-content", without("content"), (400,), None),
    ("empty-object", {}, (400,), None),
    ("unknown-field", good(extra=1), (400,), "unknown_field"),
    ("unknown-field-null", good(metadata=None), (400,), "unknown_field"),
    ("user_id-int", good(user_id=7), (400,), None),
    ("user_id-null", good(user_id=None), (400,), None),
    ("user_id-list", good(user_id=["u"]), (400,), None),
    ("user_id-empty", good(user_id=""), SEMANTIC, None),
    ("user_id-space", good(user_id="bad id"), SEMANTIC, None),
    ("user_id-slash", good(user_id="a/b"), SEMANTIC, None),
    ("user_id-129", good(user_id="u" * 129), SEMANTIC, None),
    ("user_id-nonascii", good(user_id="usér"), SEMANTIC, None),
    ("role-int", good(role=1), (400,), None),
    ("role-null", good(role=None), (400,), None),
    ("role-admin", good(role="admin"), SEMANTIC, None),
    ("role-empty", good(role=""), SEMANTIC, None),
    ("role-case", good(role="User"), SEMANTIC, None),
    ("role-tool", good(role="tool"), SEMANTIC, None),
    ("content-int", good(content=5), (400,), None),
    ("content-null", good(content=None), (400,), None),
    ("content-list", good(content=["a"]), (400,), None),
    ("content-object", good(content={"text": "a"}), (400,), None),
    ("content-bool", good(content=True), (400,), None),
    ("content-empty", good(content=""), SEMANTIC, None),
    ("top-array", [good()], (400,), None),
    ("top-string", "hello", (400,), None),
    ("top-null", None, (400,), None),
    ("top-number", 3, (400,), None),
    ("body-empty", b"", (400,), None),
    ("json-truncated", b'{"user_id":"owner-1","role":"user","content":"hel', (400,), None),
    ("json-trailing-comma", b'{"user_id":"owner-1","role":"user","content":"x",}', (400,), None),
    ("json-single-quotes", b"{'user_id':'owner-1','role':'user','content':'x'}", (400,), None),
    ("json-trailing-garbage", b'{"user_id":"owner-1","role":"user","content":"x"}}', (400,),
     None),
    ("json-two-docs", b'{"user_id":"owner-1","role":"user","content":"x"} {}', (400,), None),
    ("json-comment", b'{"user_id":"owner-1",/*c*/"role":"user","content":"x"}', (400,), None),
    ("json-bad-escape", b'{"user_id":"owner-1","role":"user","content":"\\q"}', (400,), None),
    ("json-raw-newline", b'{"user_id":"owner-1","role":"user","content":"a\nb"}', (400,), None),
    ("json-duplicate-key",
     b'{"user_id":"owner-1","role":"user","content":"x","content":"y"}', (400,), None),
    ("utf8-invalid-byte", b'{"user_id":"owner-1","role":"user","content":"a\xffb"}', (400,),
     None),
    ("utf8-overlong", b'{"user_id":"owner-1","role":"user","content":"\xc0\xaf"}', (400,),
     None),
    ("utf8-truncated", b'{"user_id":"owner-1","role":"user","content":"\xe2\x82"}', (400,),
     None),
    ("utf8-surrogate-bytes", b'{"user_id":"owner-1","role":"user","content":"\xed\xa0\x80"}',
     (400,), None),
    ("utf8-lone-surrogate-escape",
     b'{"user_id":"owner-1","role":"user","content":"\\ud800"}', (400,), None),
    ("utf8-bom", b'\xef\xbb\xbf{"user_id":"owner-1","role":"user","content":"x"}', (400,),
     None),
    ("nul-escape-in-content", b'{"user_id":"owner-1","role":"user","content":"a\\u0000b"}',
     (400, 422), None),
]


def _body_bytes(body):
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize("body,statuses,code", [c[1:] for c in TURN_CASES],
                         ids=[c[0] for c in TURN_CASES])
def test_turn_bad_body(client, probe, body, statuses, code):
    data = _body_bytes(body)
    for target in (probe.sid, probe.new):
        r = client.request("POST", "/v1/sessions/%s/turns" % target, body=data)
        tl.assert_error(r, statuses, code)
    probe.check()


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", "multipart/form-data; boundary=x",
                                   "json", ""])
def test_turn_wrong_content_type_415(client, probe, ctype):
    data = json.dumps(good()).encode()
    r = client.request("POST", "/v1/sessions/%s/turns" % probe.sid, body=data,
                       content_type=ctype if ctype != "" else None,
                       headers={"Content-Type": ""} if ctype == "" else None)
    tl.assert_error(r, 415)
    probe.check()


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON", "application/json;charset=UTF-8"])
def test_turn_json_content_type_variants_accepted(client, ctype):
    sid = tl.unique_id()
    r = client.request("POST", "/v1/sessions/%s/turns" % sid, body=json.dumps(good()).encode(),
                       content_type=ctype)
    assert r.status == 201, r


BAD_SIDS = [
    ("space", "bad%20id", (400,)),
    ("too-long-129", "s" * 129, (400,)),
    ("non-ascii", "%C3%A9t%C3%A9", (400,)),
    ("encoded-slash", "a%2Fb", (400, 404)),
    ("semicolon", "a;b", (400,)),
    ("plus", "a+b", (400,)),
    ("nul", "a%00b", (400,)),
    ("bad-escape", "a%zzb", (400,)),
    ("quote", "a%22b", (400,)),
    ("hash-encoded", "a%23b", (400,)),
    ("tilde", "a~b", (400,)),
]


@pytest.mark.parametrize("path_id,statuses", [c[1:] for c in BAD_SIDS],
                         ids=[c[0] for c in BAD_SIDS])
def test_bad_session_id(client, probe, path_id, statuses):
    r = client.request("POST", "/v1/sessions/%s/turns" % path_id, body=json.dumps(good()))
    tl.assert_error(r, statuses)
    tl.assert_error(client.get("/v1/sessions/%s" % path_id), statuses + (404,))
    tl.assert_error(client.patch("/v1/sessions/%s/state" % path_id, {"current_stage": "x"}),
                    statuses + (404,))
    tl.assert_error(client.request("POST", "/v1/sessions/%s/end" % path_id), statuses + (404,))
    probe.check()


@pytest.mark.parametrize("path_id", ["bad%20user", "u" * 129, "%C3%BC"])
def test_bad_user_id_on_dirty(client, path_id):
    tl.assert_error(client.get("/v1/users/%s/dirty" % path_id), 400)


def test_other_users_session_409_changes_nothing(client, probe):
    r = client.add_turn(probe.sid, "someone-else", "hijack")
    tl.assert_error(r, 409)
    probe.check()


# ---- body size ------------------------------------------------------------------
def _post_raw(srv, sid, body, extra_headers=b""):
    req = (b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
           % (sid.encode(), len(body), extra_headers)) + body
    return tl.raw_request(srv.host, srv.port, req, timeout=10)


def test_body_over_default_limit_413(server, client, probe):
    content = "x" * (1024 * 1024)
    body = json.dumps(good(content=content)).encode()
    assert len(body) > 1048576
    st, reply = _post_raw(server, probe.sid, body)
    assert st == 413, reply[:300]
    _, _, rbody = tl.split_reply(reply)
    assert json.loads(rbody)["error"]["code"]
    probe.check()


def test_body_just_under_default_limit(client):
    """A body under --max-body-bytes passes the HTTP layer. stratad also caps a
    turn's content (64 KiB, not in API.md): then 413 with the error body, and
    nothing stored."""
    sid = tl.unique_id()
    overhead = len(json.dumps(good(content="")).encode())
    content = "y" * (1048576 - overhead)
    r = client.add_turn(sid, OWNER, content)
    if r.status == 201:
        assert client.get_session(sid).json()["buffer"][-1]["content"] == content
    else:
        tl.assert_error(r, (413, 422))
        tl.assert_error(client.get_session(sid), 404)


def test_max_body_bytes_flag(make_server):
    srv = make_server(args=["--max-body-bytes", "1000"])
    c = srv.client()
    sid = tl.unique_id()
    small = json.dumps({"user_id": "u", "role": "user", "content": "a" * 900}).encode()
    big = json.dumps({"user_id": "u", "role": "user", "content": "a" * 1000}).encode()
    assert len(small) <= 1000 < len(big)
    assert c.request("POST", "/v1/sessions/%s/turns" % sid, body=small).status == 201
    st, reply = _post_raw(srv, sid, big)
    assert st == 413, reply[:300]
    assert c.get_session(sid).json()["state"]["turn_count"] == 1
    # Chunked bodies are limited too.
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 100]), big[i:i + 100])
                       for i in range(0, len(big), 100)) + b"0\r\n\r\n"
    req = (b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
           b"\r\nTransfer-Encoding: chunked\r\n\r\n" % sid.encode()) + chunked
    st, reply = tl.raw_request(srv.host, srv.port, req)
    assert st == 413, reply[:300]
    assert c.get_session(sid).json()["state"]["turn_count"] == 1


def test_expect_100_continue(server, client):
    sid = tl.unique_id()
    body = json.dumps(good()).encode()
    s = socket.create_connection((server.host, server.port), timeout=5)
    try:
        s.sendall(b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                  % (sid.encode(), len(body)))
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(body)
        final = b""
        while b"\r\n\r\n" not in final:
            final += s.recv(65536)
        assert tl.parse_status(final) == 201, final
    finally:
        s.close()


def test_expect_100_continue_too_big_413_without_body(server, probe):
    s = socket.create_connection((server.host, server.port), timeout=5)
    try:
        s.sendall(b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: 5000000\r\nExpect: 100-continue"
                  b"\r\n\r\n" % probe.sid.encode())
        reply = s.recv(65536)
        assert tl.parse_status(reply) == 413, reply
    finally:
        s.close()
    probe.check()


# ---- PATCH state -----------------------------------------------------------------
STATE_CASES = [
    ("missing", {}, (400,), None),
    ("unknown-field", {"current_stage": "x", "turn_count": 99}, (400,), "unknown_field"),
    ("int", {"current_stage": 3}, (400,), None),
    ("null", {"current_stage": None}, (400,), None),
    ("list", {"current_stage": ["a"]}, (400,), None),
    ("object", {"current_stage": {"a": 1}}, (400,), None),
    ("top-array", [{"current_stage": "x"}], (400,), None),
    ("malformed", b'{"current_stage": ', (400,), None),
    ("bad-utf8", b'{"current_stage": "\xff"}', (400,), None),
    ("empty-body", b"", (400,), None),
]


@pytest.mark.parametrize("body,statuses,code", [c[1:] for c in STATE_CASES],
                         ids=[c[0] for c in STATE_CASES])
def test_state_bad_body(client, probe, body, statuses, code):
    r = client.request("PATCH", "/v1/sessions/%s/state" % probe.sid, body=_body_bytes(body))
    tl.assert_error(r, statuses, code)
    probe.check()


def test_state_wrong_content_type(client, probe):
    r = client.request("PATCH", "/v1/sessions/%s/state" % probe.sid,
                       body=b'{"current_stage":"x"}', content_type="text/plain")
    tl.assert_error(r, 415)
    probe.check()


def test_state_too_long_stage(client, probe):
    """A stage far over any sane size is refused (413 by body limit, or 400/422)."""
    r = client.patch("/v1/sessions/%s/state" % probe.sid, {"current_stage": "s" * 2000000})
    tl.assert_error(r, (400, 413, 422))
    probe.check()


# ---- kv ------------------------------------------------------------------------------
# kv keys are 1..512 bytes of UTF-8 without '/' or NUL (strata.h STRATA_KV_KEY_MAX);
# API.md does not restrict them further.
@pytest.mark.parametrize("key", ["k" * 513, "%zz", "a%00b", "%FF%FE", "a%2Fb", "%C0%AF"],
                         ids=["513-bytes", "bad-escape", "nul", "bad-utf8", "encoded-slash",
                              "overlong-utf8"])
def test_kv_bad_key(client, key):
    r = client.request("PUT", "/v1/kv/l1/%s" % key, body=b"1")
    tl.assert_error(r, (400, 404, 414, 431))
    tl.assert_error(client.kv_get("l1", key), (400, 404, 414, 431))


def test_kv_deep_nesting_does_not_crash(client):
    key = tl.unique_id("deep")
    body = b"[" * 100000 + b"]" * 100000
    r = client.request("PUT", "/v1/kv/l1/%s" % key, body=body)
    assert r.status in (200, 400, 413, 422), r
    if r.status != 200:
        tl.assert_error(r, (400, 413, 422))
        tl.assert_error(client.kv_get("l1", key), 404)
    assert client.get("/healthz").status == 200


# ---- HTTP protocol level -----------------------------------------------------------
RAW_CASES = [
    ("garbage", b"HELLO\r\n\r\n", (400,)),
    ("no-version", b"GET /healthz\r\n\r\n", (400,)),
    ("http2", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", (505, 400)),
    ("http09-style", b"GET /healthz HTTP/0.9\r\n\r\n", (505, 400)),
    ("lower-method", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", (400, 405, 501)),
    ("header-no-colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", (400,)),
    ("header-space-before-colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", (400,)),
    ("cl-not-number", b"POST /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: abc\r\n\r\n", (400,)),
    ("cl-negative", b"POST /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: -1\r\n\r\n", (400,)),
    ("cl-twice-different", b"PUT /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n12", (400,)),
    ("cl-and-te", b"PUT /v1/kv/l1/kcl HTTP/1.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1\r\n1\r\n0\r\n\r\n", (400,)),
    ("te-gzip", b"PUT /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: gzip\r\n\r\n", (501, 400)),
    ("bad-chunk-size", b"PUT /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\nzz\r\n1\r\n0\r\n\r\n", (400,)),
    ("chunk-too-short", b"PUT /v1/kv/l1/k HTTP/1.1\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n5\r\n1\r\n0\r\n\r\n", (400,)),
    ("nul-in-header", b"GET /healthz HTTP/1.1\r\nHost: a\x00b\r\n\r\n", (400,)),
    ("nul-in-path", b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("space-in-path", b"GET /hea lthz HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("header-too-big", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
     + b"\r\n\r\n", (431,)),
    ("url-too-long", b"GET /v1/sessions/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     (414, 431, 400)),
    ("too-many-headers", b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n", (431, 400)),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", (400,)),
]


@pytest.mark.parametrize("data,statuses", [c[1:] for c in RAW_CASES],
                         ids=[c[0] for c in RAW_CASES])
def test_raw_protocol_errors(server, client, data, statuses):
    st, reply = tl.raw_request(server.host, server.port, data, timeout=5)
    assert st in statuses, "got %s: %r" % (st, reply[:300])
    _, headers, body = tl.split_reply(reply)
    if body:
        err = json.loads(body)["error"]
        assert err["code"] and err["message"]
    assert client.get("/healthz").status == 200
    for k in ("k", "kcl"):
        assert client.kv_get("l1", k).status == 404, "a rejected request wrote kv %s" % k


def test_random_garbage_does_not_crash(server, client):
    rng = random.Random(1234)
    prefixes = [b"", b"GET / HTTP/1.1\r\n", b"POST /v1/sessions/x/turns HTTP/1.1\r\n",
                b"PUT /v1/kv/l1/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"]
    for i in range(150):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600)))
        if i % 3 == 0:
            junk = junk.replace(b"\x00", b"")
            junk += b"\r\n\r\n"
        data = prefixes[i % len(prefixes)] + junk
        try:
            tl.raw_request(server.host, server.port, data, timeout=0.5)
        except OSError:
            pass
    assert server.alive(), server.log_tail()
    assert client.get("/healthz").status == 200
    assert client.kv_get("l1", "x").status == 404
