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
