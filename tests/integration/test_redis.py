"""stratad in front of a real Redis (Debian's redis-server, started here):
L1 on Redis through the HTTP API, and the replay log on Redis Streams that
`strata rebuild --from-redis` turns back into the same state."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import strata_testlib as tl

CLI = os.environ.get("STRATA_CLI", os.path.join(os.path.dirname(tl.STRATAD), "strata"))
REDIS = shutil.which("redis-server")

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@pytest.fixture
def redis_port():
    port = tl.free_port()
    d = tempfile.mkdtemp(prefix="strata-redis-")
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_l1_on_redis(make_server, redis_port):
    srv = make_server(args=["--l1", "redis", "--redis-addr", "127.0.0.1:%d" % redis_port])
    c = srv.client()
    sid, uid = tl.unique_id("s"), tl.unique_id("u")
    for i in range(25):
        r = c.add_turn(sid, uid, "turn %d" % i)
        assert r.status == 201, r.body
        assert r.json()["turn_count"] == i + 1
    s = c.get_session(sid).json()
    assert s["state"]["turn_count"] == 25
    assert [t["content"] for t in s["buffer"]] == ["turn %d" % i for i in range(5, 25)]
    assert c.add_turn(sid, "someone-else", "x").status == 409
    assert c.set_stage(sid, "checkout").json()["current_stage"] == "checkout"
    c.close()
    # The state lives in Redis: a restart (even from an empty data dir) keeps it.
    srv.stop()
    shutil.rmtree(srv.data_dir)
    srv.start()
    c = srv.client()
    s = c.get_session(sid).json()
    assert s["state"]["turn_count"] == 25 and s["state"]["current_stage"] == "checkout"
    c.close()


def test_rebuild_from_replay_stream(make_server, redis_port, tmp_path):
    srv = make_server(args=["--replay-stream", "redis", "--redis-addr",
                            "127.0.0.1:%d" % redis_port, "--fsync", "always"])
    c = srv.client()
    sid, uid = tl.unique_id("s"), tl.unique_id("u")
    for text in ["I love hiking.", "I'm allergic to peanuts.", "I work at Acme."]:
        assert c.add_turn(sid, uid, text).status == 201
    job = c.end_session(sid).json()["job_id"]
    deadline = time.time() + 20
    while c.get_job(job).json()["status"] not in ("done", "failed") and time.time() < deadline:
        time.sleep(0.05)
    c.put("/v1/graph/nodes/topic:x", {"label": "Topic"})
    before_mem = c.post("/v1/users/%s/memories/search" % uid,
                        {"query": "user", "limit": 50, "mode": "keyword"}).json()["results"]
    assert before_mem
    m = c.metrics().body.decode()
    assert "strata_replay_stream_appended_total" in m
    c.close()
    dst = str(tmp_path / "from-stream")
    out = subprocess.run([CLI, "rebuild", "--from-redis", "127.0.0.1:%d" % redis_port, dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    srv.stop()
    again = make_server(data_dir=dst)
    c = again.client()
    after_mem = c.post("/v1/users/%s/memories/search" % uid,
                       {"query": "user", "limit": 50, "mode": "keyword"}).json()["results"]
    assert [(m["id"], m["content"]) for m in after_mem] == \
        [(m["id"], m["content"]) for m in before_mem]
    assert c.get_session(sid).json()["state"]["turn_count"] == 3
    assert c.get("/v1/graph/nodes/topic:x").status == 200
    c.close()


# ---- TLS (src/l1/redis_tls.c) ----------------------------------------------------
REDIS_CLI = shutil.which("redis-cli")
CERTS_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support",
                        "redis_tls_certs.sh")


@pytest.fixture
def redis_tls(tmp_path):
    """A TLS-only redis-server (--port 0) with certificates made now:
    {"addr", "port", "ca", "other_ca", "dir"}."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl tool is needed to make certificates")
    certs = tmp_path / "certs"
    subprocess.run(["bash", CERTS_SH, str(certs)], check=True, capture_output=True)
    port = tl.free_port()
    d = tempfile.mkdtemp(prefix="strata-redis-tls-")
    proc = subprocess.Popen([REDIS, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(certs / "server.pem"),
                             "--tls-key-file", str(certs / "server.key"),
                             "--tls-ca-cert-file", str(certs / "ca.pem"),
                             "--tls-auth-clients", "no", "--save", "", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield {"addr": "127.0.0.1:%d" % port, "port": port, "ca": str(certs / "ca.pem"),
           "other_ca": str(certs / "other-ca.pem"), "dir": certs}
    proc.kill()
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def tls_cli(r, *args):
    out = subprocess.run([REDIS_CLI, "--tls", "--cacert", r["ca"], "-p", str(r["port"])]
                         + list(args), capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def test_l1_and_replay_stream_over_tls(make_server, redis_tls):
    srv = make_server(args=["--l1", "redis", "--redis-addr", redis_tls["addr"], "--redis-tls",
                            "--redis-tls-cacert", redis_tls["ca"], "--replay-stream", "redis"])
    c = srv.client()
    sid, uid = tl.unique_id("s"), tl.unique_id("u")
    for i in range(25):
        r = c.add_turn(sid, uid, "turn %d" % i)
        assert r.status == 201, r.body
        assert r.json()["turn_count"] == i + 1
    s = c.get_session(sid).json()
    assert [t["content"] for t in s["buffer"]] == ["turn %d" % i for i in range(5, 25)]
    assert c.set_stage(sid, "checkout").json()["current_stage"] == "checkout"
    c.close()
    if REDIS_CLI is not None:
        # The session lives in the TLS server (tenant "default": no auth), and
        # the replay stream too.
        assert tls_cli(redis_tls, "HGET", "session:{default:%s}:state" % sid,
                       "turn_count") == "25"
        assert int(tls_cli(redis_tls, "XLEN", "strata:replay")) >= 25
    # Restart from an empty data dir: the state comes back from Redis over TLS.
    srv.stop()
    shutil.rmtree(srv.data_dir)
    srv.start()
    c = srv.client()
    s = c.get_session(sid).json()
    assert s["state"]["turn_count"] == 25 and s["state"]["current_stage"] == "checkout"
    c.close()
    # strata rebuild reads the replay stream over TLS too (and not without it).
    dst = tempfile.mkdtemp(prefix="strata-rebuild-tls-")
    shutil.rmtree(dst)
    out = subprocess.run([CLI, "rebuild", "--from-redis", redis_tls["addr"], "--redis-tls",
                          "--redis-tls-cacert", redis_tls["ca"], dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "records replayed" in out.stdout
    shutil.rmtree(dst, ignore_errors=True)
    out = subprocess.run([CLI, "rebuild", "--from-redis", redis_tls["addr"], dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    shutil.rmtree(dst, ignore_errors=True)


def test_redis_tls_wrong_ca_fails_to_start(make_server, redis_tls):
    srv = make_server(args=["--l1", "redis", "--redis-addr", redis_tls["addr"], "--redis-tls",
                            "--redis-tls-cacert", redis_tls["other_ca"]], start=False)
    t0 = time.monotonic()
    with pytest.raises(tl.ServerDied):
        srv.start()
    assert time.monotonic() - t0 < 10
    log = srv.log_text()
    assert "certificate is not accepted" in log and redis_tls["other_ca"] in log, log
    # Plain RESP to the TLS port fails too (no hang), and TLS files without
    # --redis-tls are refused rather than silently ignored.
    plain = make_server(args=["--l1", "redis", "--redis-addr", redis_tls["addr"]], start=False)
    with pytest.raises(tl.ServerDied):
        plain.start()
    half = make_server(args=["--l1", "redis", "--redis-addr", redis_tls["addr"],
                             "--redis-tls-cacert", redis_tls["ca"]], start=False)
    with pytest.raises(tl.ServerDied):
        half.start()
    assert "need --redis-tls" in half.log_text()


def test_forget_reaches_redis(make_server, redis_port):
    """Right to be forgotten with L1 on Redis and the replay log on a Redis
    Stream: the user's session keys and their stream entries are gone; the
    other user's stay."""
    import uuid
    srv = make_server(args=["--l1", "redis", "--replay-stream", "redis", "--redis-addr",
                            "127.0.0.1:%d" % redis_port, "--fsync", "always"])
    c = srv.client()
    gone, stays = tl.unique_id("u"), tl.unique_id("u")
    mk = "zq" + uuid.uuid4().hex[:12]
    for uid, text in ((gone, "I love %s." % mk), (stays, "I love hiking.")):
        assert c.add_turn("s-" + uid, uid, text).status == 201
    r = c.delete("/user/%s/memory" % gone)
    assert r.status == 200 and r.json()["deleted"]["l1"] == 1, r.body
    assert c.get_session("s-" + gone).status == 404
    assert c.get_session("s-" + stays).status == 200
    cli = shutil.which("redis-cli")
    dump = subprocess.run([cli, "-p", str(redis_port), "--no-raw", "XRANGE", "strata:replay",
                           "-", "+"], capture_output=True, text=True, timeout=10).stdout
    assert "hiking" in dump and mk not in dump, dump[:2000]
    keys = subprocess.run([cli, "-p", str(redis_port), "KEYS", "*"], capture_output=True,
                          text=True, timeout=10).stdout
    assert gone not in keys and stays in keys, keys
    c.close()
