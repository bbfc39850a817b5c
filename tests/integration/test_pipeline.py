"""The memory pipeline end to end over HTTP: a scripted conversation goes
through consolidation (L1 -> L2, delta-merge profile, clarifications) and
distillation (L2 -> L3); context recall; a SIGKILL in the middle of the
pipeline reaches the same end state; a rebuild from the log equals the live
state; bad input to the pipeline routes changes nothing."""

import json
import os
import subprocess
import time

import pytest

import strata_testlib as tl
from strata_testlib import assert_error

CLI = os.environ.get("STRATA_CLI", os.path.join(os.path.dirname(tl.STRATAD), "strata"))

SESSION_1 = [
    ("user", "Hi! I'm a senior developer at Acme."),
    ("assistant", "Nice to meet you. How can I help?"),
    ("user", "I prefer concise answers."),
]
SESSION_2 = [
    ("user", "Big news: I was promoted, I'm a team lead now."),
    ("user", "Also, I'm allergic to peanuts."),
    ("user", "I love hiking."),
    ("user", "I live in Berlin."),
    ("user", "I live in Munich."),
]


def wait_job(client, job_id, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get_job(job_id)
        assert r.status == 200, r.body
        st = r.json()["status"]
        if st in ("done", "failed"):
            return r.json()
        time.sleep(0.05)
    raise AssertionError("job %s did not finish" % job_id)


def run_session(client, sid, uid, turns):
    for role, text in turns:
        r = client.add_turn(sid, uid, text, role=role)
        assert r.status == 201, r.body
    r = client.end_session(sid)
    assert r.status == 202, r.body
    job = wait_job(client, r.json()["job_id"])
    assert job["status"] == "done", job
    return job


def distill(client, uid):
    r = client.post("/v1/jobs/distill", {"user_id": uid})
    assert r.status == 202, r.body
    job = wait_job(client, r.json()["job_id"])
    assert job["status"] == "done", job


def scripted(client, uid):
    run_session(client, tl.unique_id("s"), uid, SESSION_1)
    run_session(client, tl.unique_id("s"), uid, SESSION_2)
    distill(client, uid)


def memories(client, uid, query="user", limit=100):
    r = client.post("/v1/users/%s/memories/search" % uid, {"query": query, "limit": limit,
                                                          "mode": "keyword"})
    assert r.status == 200, r.body
    return r.json()["results"]


def graph(client, uid):
    r = client.get("/v1/graph/subgraph?center=user:%s&depth=2" % uid)
    assert r.status == 200, r.body
    return r.json()


def state(client, uid):
    """Everything the pipeline produced for uid, normalised for comparison."""
    mems = sorted((m["memory_type"], m["content"], tuple(m["provenance"]))
                  for m in memories(client, uid))
    prof = client.get("/v1/users/%s/profile" % uid).json()
    g = graph(client, uid)
    edges = sorted((e["from"], e["type"], e["to"], json.dumps(e["properties"], sort_keys=True))
                   for e in g["edges"])
    nodes = sorted(n["id"] for n in g["nodes"])
    attrs = {k: (v["value"], [h["value"] for h in v["history"]])
             for k, v in prof["attributes"].items()}
    clar = sorted((c["attribute"], c["old"], c["new"]) for c in prof["clarifications"])
    return {"memories": mems, "attrs": attrs, "clarifications": clar, "nodes": nodes,
            "edges": edges}


def test_scripted_conversation(client, uid):
    scripted(client, uid)
    mems = memories(client, uid)
    contents = [m["content"] for m in mems]
    assert any("peanut" in c for c in contents), contents
    assert any("hiking" in c.lower() for c in contents), contents
    for m in mems:
        assert m["provenance"] and m["provenance"][0].startswith("turn:"), m
    prof = client.get("/v1/users/%s/profile" % uid).json()
    attrs = prof["attributes"]
    assert attrs["role"]["value"] == "team lead", attrs
    assert [h["value"] for h in attrs["role"]["history"]] == ["senior developer"]
    h = attrs["role"]["history"][0]
    assert h["valid_to"] >= h["valid_from"]
    # The ambiguous contradiction is a clarification, and changed nothing.
    assert attrs["location"]["value"] == "Berlin"
    clar = [c for c in prof["clarifications"] if c["attribute"] == "location"]
    assert len(clar) == 1 and clar[0]["old"] == "Berlin" and clar[0]["new"] == "Munich"
    g = graph(client, uid)
    edges = {(e["type"], e["to"]) for e in g["edges"] if e["from"] == "user:%s" % uid}
    assert ("HAS_CONSTRAINT", "constraint:peanuts") in edges, edges
    assert ("INTERESTED_IN", "topic:hiking") in edges, edges
    w = [e for e in g["edges"] if e["type"] == "INTERESTED_IN"][0]["properties"]["weight"]
    assert 0 < w <= 1
    labels = {n["id"]: n["label"] for n in g["nodes"]}
    assert labels["constraint:peanuts"] == "Constraint"
    assert labels["topic:hiking"] == "Topic"
    # Syncing the profile to L3 cleared the dirty set.
    assert client.dirty(uid).json()["attributes"] == []
    user_node = client.get("/v1/graph/nodes/user:%s" % uid).json()
    assert user_node["properties"].get("role") == "team lead"


def test_clarification_resolution(client, uid):
    scripted(client, uid)
    prof = client.get("/v1/users/%s/profile" % uid).json()
    cid = [c for c in prof["clarifications"] if c["attribute"] == "location"][0]["id"]
    path = "/v1/users/%s/clarifications/%s" % (uid, cid)
    assert_error(client.post(path, {"choose": "maybe"}), (400, 422))
    assert_error(client.post(path, {}), 400)
    assert_error(client.post(path, {"choose": "new", "value": "x"}), 400)
    r = client.post(path, {"choose": "new"})
    assert r.status == 200, r.body
    assert r.json()["state"]["value"] == "Munich"
    assert [h["value"] for h in r.json()["state"]["history"]] == ["Berlin"]
    prof = client.get("/v1/users/%s/profile" % uid).json()
    assert prof["attributes"]["location"]["value"] == "Munich"
    assert all(c["id"] != cid for c in prof["clarifications"])
    assert_error(client.post(path, {"choose": "old"}), 409)
    assert_error(client.post("/v1/users/%s/clarifications/clr-00000000000000ff" % uid,
                             {"choose": "old"}), 404)
    assert "location" in client.dirty(uid).json()["attributes"]


def test_every_ten_turns_queue_consolidation(client, uid):
    sid = tl.unique_id("s")
    job = None
    for i in range(10):
        r = client.add_turn(sid, uid, "I love topic%d." % i)
        assert r.status == 201
        if i < 9:
            assert r.json()["consolidation"] == "none"
        else:
            assert r.json()["consolidation"] == "queued"
            job = r.json()["job_id"]
    assert wait_job(client, job)["status"] == "done"
    assert len(memories(client, uid, "love")) == 10


def test_duplicates_are_skipped(client, uid):
    run_session(client, tl.unique_id("s"), uid, [("user", "I love hiking.")])
    run_session(client, tl.unique_id("s"), uid, [("user", "I love hiking.")])
    run_session(client, tl.unique_id("s"), uid, [("user", "I love hiking!")])
    assert len([m for m in memories(client, uid, "hiking")]) == 1


def test_pii_is_masked_before_l2(client, uid):
    run_session(client, tl.unique_id("s"), uid,
                [("user", "My name is Ann and my email is ann.smith@example.com."),
                 ("user", "I live in Lisbon, call me on +44 20 7946 0958.")])
    for m in memories(client, uid):
        assert "ann.smith@example.com" not in m["content"]
        assert "7946" not in m["content"]


def test_context_recall(client, uid):
    scripted(client, uid)
    sid = tl.unique_id("s")
    client.add_turn(sid, uid, "What snacks should I bring on my next trip?")
    r = client.post("/v1/sessions/%s/context" % sid, {"query": "snacks peanuts trip",
                                                      "budget_chars": 4000})
    assert r.status == 200, r.body
    c = r.json()
    assert c["buffer"][-1]["content"].startswith("What snacks")
    assert any("peanut" in m["content"] for m in c["memories"])
    assert c["profile"]["attributes"]["role"]["value"] == "team lead"
    assert c["graph"]["edges"]
    assert "peanut" in c["text"] and len(c["text"]) <= 4000
    small = client.post("/v1/sessions/%s/context" % sid, {"query": "peanuts",
                                                          "budget_chars": 120}).json()
    assert len(small["text"]) <= 120
    assert_error(client.post("/v1/sessions/nope/context", {"query": "x"}), 404)
    assert_error(client.post("/v1/sessions/%s/context" % sid, {"budget_chars": 0}), (400, 422))
    assert_error(client.post("/v1/sessions/%s/context" % sid, {"budget_chars": "9"}), 400)
    assert_error(client.post("/v1/sessions/%s/context" % sid, {"bogus": 1}), 400)


def test_distill_bad_input(client):
    assert_error(client.post("/v1/jobs/distill", {"user_id": "bad id"}), 400)
    assert_error(client.post("/v1/jobs/distill", {"user_id": 5}), 400)
    assert_error(client.post("/v1/jobs/distill", {"x": 1}), 400)
    r = client.post("/v1/jobs/distill")
    assert r.status == 202


@pytest.mark.slow
def test_sigkill_mid_pipeline_reaches_same_state(make_server):
    ref = make_server(args=["--fsync", "always"])
    c = ref.client()
    uid = tl.unique_id("u")
    scripted(c, uid)
    want = state(c, uid)
    c.close()
    for round_ in range(3):
        srv = make_server(args=["--fsync", "always"])
        c = srv.client()
        sid1, sid2 = tl.unique_id("s"), tl.unique_id("s")
        for role, text in SESSION_1:
            c.add_turn(sid1, uid, text, role=role)
        c.end_session(sid1)
        for role, text in SESSION_2:
            c.add_turn(sid2, uid, text, role=role)
        c.end_session(sid2)
        time.sleep(0.002 * round_)
        c.close()
        srv.kill()  # jobs queued or half-done
        srv.start()
        c = srv.client()
        deadline = time.time() + 20
        while time.time() < deadline:
            m = c.metrics().body.decode()
            if "strata_jobs_queued 0" in m and "strata_jobs_running 0" in m:
                break
            time.sleep(0.05)
        distill(c, uid)
        got = state(c, uid)
        assert got["memories"] == [(t, ct, p) for (t, ct, p) in got["memories"]]
        assert [x[:2] for x in got["memories"]] == [x[:2] for x in want["memories"]]
        assert got["attrs"] == want["attrs"]
        assert got["clarifications"] == want["clarifications"]
        assert got["nodes"] == want["nodes"]
        assert [e[:3] for e in got["edges"]] == [e[:3] for e in want["edges"]]
        c.close()


def test_rebuild_equals_live_state(make_server, tmp_path):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    uid = tl.unique_id("u")
    scripted(c, uid)
    live = state(c, uid)
    c.close()
    dst = str(tmp_path / "rebuilt")
    out = subprocess.run([CLI, "rebuild", "--data-dir", srv.data_dir, dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "records replayed" in out.stdout
    srv.stop()
    again = make_server(data_dir=dst)
    c = again.client()
    assert state(c, uid) == live
    c.close()
