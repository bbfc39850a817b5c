"""Right to be forgotten (brief §3.2): DELETE /user/{id}/memory and its twin
/v1/users/{id}/memory remove a user from L1, L2, L3, the profile, the jobs, the
event log and the snapshots. Proven by scanning every file under the data
directory for marker strings only that user ever wrote, by reading every route,
by restarting, by `strata rebuild`, and by a SIGKILL right after the receipt;
another user's data (sharing graph nodes with them) stays intact."""

import os
import subprocess
import threading
import uuid

import strata_testlib as tl
from strata_testlib import assert_error
from test_pipeline import CLI, distill, memories, run_session, wait_job


def marker():
    # lower case letters and digits: survives slugging into node ids
    return "zq" + uuid.uuid4().hex[:12]


def files_with(data_dir, needles):
    """Every file under data_dir holding any of needles, with the needle."""
    hits = []
    for root, _, names in os.walk(data_dir):
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    blob = f.read()
            except OSError:
                continue
            for n in needles:
                if n.encode() in blob:
                    hits.append((path, n))
    return hits


def populate(c, uid, m):
    """Write uid's data into every tier; m: dict of marker strings."""
    sid = tl.unique_id("s")
    run_session(c, sid, uid, [
        ("user", "I love %s." % m["topic"]),
        ("user", "I'm allergic to %s." % m["allergy"]),
        ("user", "I work at %s." % m["employer"]),
        ("user", "I live in Berlin."),
        ("user", "I love hiking."),
    ])
    distill(c, uid)
    r = c.post("/v1/users/%s/memories" % uid,
               {"memory_type": "fact", "content": "Secret note %s" % m["memory"],
                "importance": 0.4})
    assert r.status == 201, r.body
    mem_id = r.json()["id"]
    # a graph node of theirs written through the API, linked only to them
    r = c.put("/v1/graph/nodes/product:%s" % m["node"], {"label": "Product",
                                                        "properties": {"note": m["node"]}})
    assert r.status in (200, 201), r.body
    r = c.put("/v1/graph/nodes/user:%s" % uid, {"label": "User", "properties": {}})
    assert r.status in (200, 201), r.body
    r = c.put("/v1/graph/edges", {"from": "user:%s" % uid, "to": "product:%s" % m["node"],
                                 "type": "OWNS", "properties": {"weight": 0.5}})
    assert r.status in (200, 201), r.body
    # an open session still in L1 (not ended)
    open_sid = tl.unique_id("s")
    r = c.add_turn(open_sid, uid, "Remember the code word %s please." % m["open"])
    assert r.status == 201, r.body
    return {"session": sid, "open_session": open_sid, "memory_id": mem_id}


def new_markers():
    return {k: marker() for k in ("topic", "allergy", "employer", "memory", "node", "open")}


def assert_gone(c, uid, m, refs):
    assert c.get_session(refs["open_session"]).status == 404
    assert c.get_session(refs["session"]).status == 404
    assert memories(c, uid, query="hiking love allergic secret note") == []
    assert c.get("/v1/users/%s/memories/%s" % (uid, refs["memory_id"])).status == 404
    prof = c.get("/v1/users/%s/profile" % uid).json()
    assert prof["attributes"] == {} and prof["clarifications"] == [], prof
    assert c.get("/v1/users/%s/dirty" % uid).json()["attributes"] == []
    assert c.get("/v1/graph/nodes/user:%s" % uid).status == 404
    assert c.get("/v1/graph/nodes/topic:%s" % m["topic"]).status == 404
    assert c.get("/v1/graph/nodes/constraint:%s" % m["allergy"]).status == 404
    assert c.get("/v1/graph/nodes/organization:%s" % m["employer"]).status == 404
    assert c.get("/v1/graph/nodes/product:%s" % m["node"]).status == 404
    r = c.post("/v1/sessions/%s/context" % refs["open_session"], {"query": "code word"})
    assert r.status in (200, 404), r.body
    if r.status == 200:
        for v in m.values():
            assert v not in r.body.decode(), r.body


def assert_other_intact(c, other, before):
    mems = sorted(x["content"] for x in memories(c, other, query="hiking love allergic"))
    assert mems == before["memories"]
    prof = c.get("/v1/users/%s/profile" % other).json()
    assert sorted(prof["attributes"]) == before["attrs"]
    # the shared nodes stay: their edges of the other user hold them
    assert c.get("/v1/graph/nodes/topic:hiking").status == 200
    assert c.get("/v1/graph/nodes/place:berlin").status == 200


def other_state(c, other):
    return {"memories": sorted(x["content"] for x in memories(c, other,
                                                              query="hiking love allergic")),
            "attrs": sorted(c.get("/v1/users/%s/profile" % other).json()["attributes"])}


def test_forget_removes_the_user_from_every_tier_and_file(make_server, tmp_path):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    uid, other = tl.unique_id("u"), tl.unique_id("u")
    m = new_markers()
    refs = populate(c, uid, m)
    # the other user shares topic:hiking and place:berlin
    run_session(c, tl.unique_id("s"), other, [("user", "I love hiking."),
                                              ("user", "I live in Berlin.")])
    distill(c, other)
    before = other_state(c, other)
    assert before["memories"], before
    # a snapshot that holds the user, so compaction has old snapshots to replace
    srv.restart()
    c = srv.client()
    assert files_with(srv.data_dir, list(m.values())), "markers should be on disk before"

    r = c.delete("/user/%s/memory" % uid)
    assert r.status == 200, r.body
    receipt = r.json()
    assert receipt["user_id"] == uid
    d = receipt["deleted"]
    assert set(d) >= {"l1", "l2", "l3", "log"}
    assert d["l1"] == 2, d          # the ended session (kept until idle expiry) and the open one
    assert d["l2"] >= 3, d          # consolidated memories + the explicit one
    assert d["l3"] >= 5, d          # user node, only-theirs nodes, edges
    assert d["log"] >= 10, d        # turns, session records, memories, graph, profile...

    assert files_with(srv.data_dir, list(m.values()) + [uid]) == []
    assert_gone(c, uid, m, refs)
    assert_other_intact(c, other, before)
    metrics = c.get("/metrics").body.decode()
    assert "strata_users_forgotten_total 1" in metrics
    assert "strata_forget_log_records_erased_total %d" % d["log"] in metrics

    # forgetting again finds nothing
    r = c.delete("/v1/users/%s/memory" % uid)
    assert r.status == 200, r.body
    assert r.json()["deleted"]["l2"] == 0 and r.json()["deleted"]["log"] == 0

    # a restart does not bring them back (snapshots and log both clean)
    srv.restart()
    c = srv.client()
    assert_gone(c, uid, m, refs)
    assert_other_intact(c, other, before)
    c.close()

    # nor does a rebuild from the log
    dst = str(tmp_path / "rebuilt")
    out = subprocess.run([CLI, "rebuild", "--data-dir", srv.data_dir, dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    srv.stop()
    again = make_server(data_dir=dst)
    c = again.client()
    assert_gone(c, uid, m, refs)
    assert_other_intact(c, other, before)
    assert files_with(dst, list(m.values()) + [uid]) == []
    c.close()


def test_forget_twin_path_cli_and_unknown_user(make_server):
    srv = make_server()
    c = srv.client()
    uid = tl.unique_id("u")
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact", "content": "x y z",
                                              "importance": 0.5})
    assert r.status == 201
    out = subprocess.run([CLI, "--url", srv.url, "user", "forget", uid],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "forgot user %s" % uid in out.stdout and "1 memories" in out.stdout, out.stdout
    out = subprocess.run([CLI, "--url", srv.url, "--json", "user", "forget", uid],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '"l2": 0' in out.stdout or '"l2":0' in out.stdout, out.stdout
    # a user never seen: an all-zero receipt, not an error that tells anything
    r = c.delete("/v1/users/%s/memory" % tl.unique_id("nobody"))
    assert r.status == 200
    assert all(v == 0 for v in r.json()["deleted"].values()), r.body


def test_forget_bad_input_changes_nothing(make_server):
    srv = make_server()
    c = srv.client()
    uid = tl.unique_id("u")
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact", "content": "keep me",
                                              "importance": 0.5})
    assert r.status == 201
    for bad in ["..", "a%2Fb", "a%00b", "x" * 129, "a%20b", "%2E%2E", "bad%ZZ"]:
        r = c.delete("/v1/users/%s/memory" % bad)
        assert r.status in (400, 404), (bad, r.status, r.body)
        r = c.delete("/user/%s/memory" % bad)
        assert r.status in (400, 404), (bad, r.status, r.body)
    assert_error(c.delete("/v1/users/%s/memory" % uid, json_body={"cascade": True}), 400)
    assert_error(c.request("DELETE", "/v1/users/%s/memory" % uid, body=b"{not json",
                           headers={"Content-Type": "application/json"}), 400)
    assert c.get("/v1/users/%s/memories/%s" % (uid, r.json().get("id", "0"))).status in (200,
                                                                                         404)
    assert len(memories(c, uid, query="keep")) == 1


def test_forget_is_scoped_to_the_callers_tenant(make_server):
    admin = "adm-" + uuid.uuid4().hex
    srv = make_server(args=["--admin-key", admin])
    c = srv.client()
    keys = {}
    for t in ("ta", "tb"):
        r = c.post("/v1/admin/tenants/%s/keys" % t, headers={"Authorization": "Bearer " + admin})
        assert r.status == 201, r.body
        keys[t] = {"Authorization": "Bearer " + r.json()["key"]}
    uid = tl.unique_id("u")
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact", "content": "tenant a data",
                                              "importance": 0.5}, headers=keys["ta"])
    assert r.status == 201
    assert c.delete("/v1/users/%s/memory" % uid).status == 401
    r = c.delete("/v1/users/%s/memory" % uid, headers=keys["tb"])
    assert r.status == 200 and r.json()["deleted"]["l2"] == 0, r.body
    r = c.post("/v1/users/%s/memories/search" % uid, {"query": "tenant", "mode": "keyword"},
               headers=keys["ta"])
    assert len(r.json()["results"]) == 1
    r = c.delete("/user/%s/memory" % uid, headers=keys["ta"])
    assert r.status == 200 and r.json()["deleted"]["l2"] == 1, r.body


def test_forget_under_load_then_sigkill_keeps_every_other_write(make_server):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    uid = tl.unique_id("u")
    mk = marker()
    for i in range(30):
        assert c.add_turn(tl.unique_id("s"), uid, "I love %s number %d." % (mk, i)).status == 201
    acked = []
    stop = threading.Event()
    other_sid = tl.unique_id("s")

    def writer():
        w = srv.client()
        i = 0
        while not stop.is_set():
            r = w.add_turn(other_sid, "other-user", "turn %d" % i)
            if r.status == 201:
                acked.append(i)
            i += 1
        w.close()

    th = threading.Thread(target=writer)
    th.start()
    try:
        r = c.delete("/user/%s/memory" % uid)
        assert r.status == 200, r.body
        assert r.json()["deleted"]["l1"] == 30
    finally:
        stop.set()
        th.join()
    assert acked, "the writer made no progress"
    srv.kill()
    srv.start()
    c = srv.client()
    assert files_with(srv.data_dir, [mk]) == []
    # every acknowledged turn of the other user survived the forget and the kill
    r = c.get_session(other_sid)
    assert r.status == 200, r.body
    assert r.json()["state"]["turn_count"] >= len(acked)
    assert r.json()["buffer"][-1]["content"] == "turn %d" % acked[-1] or \
        r.json()["state"]["turn_count"] == len(acked) + 1


def test_forget_interrupted_by_a_crash_is_finished_at_the_next_start(make_server):
    """The process dies after the log is compacted but before the snapshots
    are replaced (a failpoint), so older snapshots still hold the user: the
    next start must finish the deletion (plain and encrypted)."""
    for env in ({}, {"STRATA_MASTER_KEY": os.urandom(32).hex()}):
        srv = make_server(args=["--fsync", "always"],
                          env=dict(env, STRATA_FAILPOINT="forget-after-erase"))
        c = srv.client()
        uid, other = tl.unique_id("u"), tl.unique_id("u")
        mk = marker()
        for u, text in ((uid, "my note %s" % mk), (other, "my note for later")):
            r = c.post("/v1/users/%s/memories" % u, {"memory_type": "fact", "content": text,
                                                    "importance": 0.5})
            assert r.status == 201
        c.close()
        srv.restart()  # snapshots that hold the user
        c = srv.client()
        try:
            c.delete("/user/%s/memory" % uid)
        except Exception:
            pass  # the server dies mid-request
        srv.proc.wait(timeout=20)
        assert srv.proc.returncode == 99, srv.log_tail()
        srv.exit_codes.append(99)
        assert any(n.startswith("forget-") for n in os.listdir(srv.data_dir))
        srv.extra_env.pop("STRATA_FAILPOINT")
        srv.start()
        assert "finishing an interrupted right-to-be-forgotten" in srv.log_text()
        c = srv.client()
        assert memories(c, uid, query="note") == []
        assert [x["content"] for x in memories(c, other, query="note")] == ["my note for later"]
        c.close()
        srv.stop()
        assert not any(n.startswith("forget-") for n in os.listdir(srv.data_dir))
        assert files_with(srv.data_dir, [mk, uid]) == []
