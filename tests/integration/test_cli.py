"""The strata CLI against a running stratad: text and --json output, exit codes.

Contract: strata [--url URL] [--json] <command>; exit 0 on success, non-zero
with a message on stderr on error; --json prints the server's JSON.
"""

import json
import os

import pytest

import strata_testlib as tl


@pytest.fixture(scope="module", autouse=True)
def _need_cli():
    if not (os.path.isfile(tl.STRATA_CLI) and os.access(tl.STRATA_CLI, os.X_OK)):
        pytest.skip("strata CLI not found at %s (set STRATA_CLI)" % tl.STRATA_CLI)


def cli(server, *args, json_out=False, **kw):
    return tl.run_cli(list(args), url=server.url, json_out=json_out, **kw)


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout,
                                                                    p.stderr)
    return p


def fails(p):
    assert p.returncode != 0, "expected failure, got exit 0\nstdout: %s" % p.stdout
    assert p.returncode > 0, "CLI died by signal %d" % -p.returncode
    assert p.stderr.strip(), "error without a message on stderr"
    return p


def as_json(p):
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise AssertionError("--json output is not JSON: %r" % p.stdout[:500])


# ---- health ----------------------------------------------------------------------
def test_health_text(server):
    p = ok(cli(server, "health"))
    assert "ok" in p.stdout.lower()


def test_health_json(server):
    assert as_json(ok(cli(server, "health", json_out=True)))["status"] == "ok"


def test_global_flags_any_order(server):
    # The contract puts global flags first; that form must work.
    p = ok(tl.run_cli(["--json", "--url", server.url, "health"]))
    assert json.loads(p.stdout)["status"] == "ok"


# ---- turns and sessions ---------------------------------------------------------------
def test_turn_add_json(server, client, sid, uid):
    p = ok(cli(server, "turn", "add", sid, "--user", uid, "--role", "user", "hello there",
               json_out=True))
    body = as_json(p)
    assert body["session_id"] == sid
    assert body["turn_count"] == 1
    assert body["consolidation"] == "none"
    s = client.get_session(sid).json()
    assert s["user_id"] == uid
    assert [(t["role"], t["content"]) for t in s["buffer"]] == [("user", "hello there")]


def test_turn_add_text(server, client, sid, uid):
    for role in ("user", "assistant", "system"):
        p = ok(cli(server, "turn", "add", sid, "--user", uid, "--role", role, "from " + role))
        assert p.stdout.strip(), "no output in text mode"
    s = client.get_session(sid).json()
    assert [t["content"] for t in s["buffer"]] == ["from user", "from assistant", "from system"]
    assert s["state"]["turn_count"] == 3


def test_turn_add_unicode_and_quotes(server, client, sid, uid):
    content = 'Ünïcødé "quoted" \\ back — 你好 🎉\nsecond line'
    ok(cli(server, "turn", "add", sid, "--user", uid, "--role", "user", content))
    assert client.get_session(sid).json()["buffer"][-1]["content"] == content


def test_turn_add_tenth_reports_job(server, sid, uid):
    last = None
    for i in range(10):
        last = ok(cli(server, "turn", "add", sid, "--user", uid, "--role", "user", "t%d" % i,
                      json_out=True))
    body = as_json(last)
    assert body["turn_count"] == 10 and body["consolidation"] == "queued" and body["job_id"]


def test_session_show(server, client, sid, uid):
    client.add_turn(sid, uid, "first words")
    client.add_turn(sid, uid, "reply words", role="assistant")
    p = ok(cli(server, "session", "show", sid))
    assert sid in p.stdout
    assert "first words" in p.stdout and "reply words" in p.stdout
    j = as_json(ok(cli(server, "session", "show", sid, json_out=True)))
    assert j == client.get_session(sid).json()


def test_session_stage(server, client, sid, uid):
    client.add_turn(sid, uid, "x")
    p = ok(cli(server, "session", "stage", sid, "negotiation", json_out=True))
    st = as_json(p)
    assert st["current_stage"] == "negotiation" and st["turn_count"] == 1
    ok(cli(server, "session", "stage", sid, "closing"))
    assert client.get_session(sid).json()["state"]["current_stage"] == "closing"


def test_session_end(server, client, sid, uid):
    client.add_turn(sid, uid, "x")
    p = ok(cli(server, "session", "end", sid, json_out=True))
    job_id = as_json(p)["job_id"]
    assert client.get_job(job_id).status == 200
    client.add_turn(sid, uid, "y")
    p = ok(cli(server, "session", "end", sid))
    assert p.stdout.strip()


def test_dirty(server, uid):
    j = as_json(ok(cli(server, "dirty", uid, json_out=True)))
    assert j["user_id"] == uid and j["attributes"] == []
    ok(cli(server, "dirty", uid))


# ---- kv -----------------------------------------------------------------------------
@pytest.mark.parametrize("tier", ["l1", "l2", "l3"])
def test_kv_put_get_json(server, client, tier):
    key = tl.unique_id("clik")
    value = {"name": "Ada", "langs": ["c", "python"], "n": 3, "ok": True, "none": None}
    ok(cli(server, "kv", "put", tier, key, json.dumps(value)))
    assert client.kv_get(tier, key).json() == value
    assert as_json(ok(cli(server, "kv", "get", tier, key, json_out=True))) == value


def test_kv_get_text(server, client):
    key = tl.unique_id("clik")
    client.kv_put("l1", key, {"hello": "world"})
    p = ok(cli(server, "kv", "get", "l1", key))
    assert "hello" in p.stdout and "world" in p.stdout


def test_kv_put_scalar(server, client):
    key = tl.unique_id("clik")
    ok(cli(server, "kv", "put", "l2", key, "42"))
    assert client.kv_get("l2", key).json() == 42
    ok(cli(server, "kv", "put", "l2", key, '"text"'))
    assert client.kv_get("l2", key).json() == "text"


# ---- errors ---------------------------------------------------------------------------
def test_session_show_unknown_fails(server):
    fails(cli(server, "session", "show", tl.unique_id()))
    fails(cli(server, "session", "show", tl.unique_id(), json_out=True))


def test_kv_get_absent_fails(server):
    fails(cli(server, "kv", "get", "l1", tl.unique_id("absent")))


def test_kv_put_invalid_json_fails(server, client):
    key = tl.unique_id("clik")
    fails(cli(server, "kv", "put", "l1", key, "{not json"))
    assert client.kv_get("l1", key).status == 404


def test_kv_bad_tier_fails(server):
    fails(cli(server, "kv", "put", "l9", "k", "1"))
    fails(cli(server, "kv", "get", "l9", "k"))


def test_turn_bad_role_fails(server, client, sid, uid):
    fails(cli(server, "turn", "add", sid, "--user", uid, "--role", "admin", "x"))
    assert client.get_session(sid).status == 404


def test_turn_missing_user_fails(server, client, sid):
    fails(cli(server, "turn", "add", sid, "--role", "user", "x"))
    assert client.get_session(sid).status == 404


def test_turn_conflict_fails(server, client, sid, uid):
    client.add_turn(sid, uid, "mine")
    p = fails(cli(server, "turn", "add", sid, "--user", "other", "--role", "user", "x"))
    assert "409" in p.stderr or "conflict" in p.stderr.lower() or "owned" in p.stderr.lower() \
        or "another" in p.stderr.lower(), p.stderr
    assert client.get_session(sid).json()["state"]["turn_count"] == 1


def test_session_stage_unknown_fails(server):
    fails(cli(server, "session", "stage", tl.unique_id(), "x"))


def test_session_end_unknown_fails(server):
    fails(cli(server, "session", "end", tl.unique_id()))


def test_bad_session_id_fails(server):
    fails(cli(server, "session", "show", "bad id"))


@pytest.mark.parametrize("args", [
    [], ["nosuchcommand"], ["turn"], ["turn", "add"], ["session"], ["session", "show"],
    ["kv", "get", "l1"], ["kv", "put", "l1", "k"], ["session", "frobnicate", "x"],
])
def test_usage_errors(server, args):
    fails(cli(server, *args))


def test_unreachable_server_fails(tmp_path):
    port = tl.free_port()
    p = tl.run_cli(["health"], url="http://127.0.0.1:%d" % port, timeout=30)
    fails(p)


def test_bad_url_fails():
    fails(tl.run_cli(["health"], url="not a url"))
