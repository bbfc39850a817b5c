"""L3 over HTTP: node and edge upserts, delete cascade, traversal over cycles
and self-loops, as_of reads of expired edges, point-in-time restore through
the CLI equal to the state at that time, acknowledged graph writes surviving
SIGKILL, and bad input that changes nothing."""

import os
import subprocess
import time

import strata_testlib as tl
from strata_testlib import assert_error

CLI = os.environ.get("STRATA_CLI", os.path.join(os.path.dirname(tl.STRATAD), "strata"))


def node(c, nid, label, props=None):
    body = {"label": label}
    if props is not None:
        body["properties"] = props
    return c.put("/v1/graph/nodes/%s" % nid, body)


def edge(c, a, b, t, props=None, **kw):
    body = {"from": a, "to": b, "type": t}
    if props is not None:
        body["properties"] = props
    body.update(kw)
    return c.put("/v1/graph/edges", body)


def sub(c, center, **q):
    qs = "&".join("%s=%s" % kv for kv in q.items())
    return c.get("/v1/graph/subgraph?center=%s%s" % (center, ("&" + qs) if qs else ""))


def test_node_upsert_merges(client):
    u = tl.unique_id("user:")
    assert node(client, u, "User", {"name": "Ann", "age": 30}).status == 201
    r = node(client, u, "User", {"age": 31, "name": None, "city": "Lisbon"})
    assert r.status == 200
    assert r.json()["properties"] == {"age": 31, "city": "Lisbon"}
    assert client.get("/v1/graph/nodes/%s" % u).json()["label"] == "User"


def test_edges_upsert_on_from_to_type(client):
    u, t = tl.unique_id("user:"), tl.unique_id("topic:")
    node(client, u, "User")
    node(client, t, "Topic")
    assert edge(client, u, t, "INTERESTED_IN", {"weight": 0.9}).status == 201
    assert edge(client, u, t, "INTERESTED_IN", {"weight": 0.5}).status == 200
    assert edge(client, u, t, "MENTIONED").status == 201
    g = sub(client, u, depth=1).json()
    types = sorted((e["type"], e["properties"].get("weight")) for e in g["edges"])
    assert types == [("INTERESTED_IN", 0.5), ("MENTIONED", None)]
    for e in g["edges"]:
        assert e["valid_to"] == 0 and e["expired_at"] == 0 and e["created_at"] > 1600000000


def test_delete_cascade_and_cycles(client):
    a, b, c_ = (tl.unique_id("n:") for _ in range(3))
    for n in (a, b, c_):
        node(client, n, "Topic")
    edge(client, a, b, "RELATED_TO")
    edge(client, b, c_, "RELATED_TO")
    edge(client, c_, a, "RELATED_TO")
    edge(client, a, a, "SELF")
    g = sub(client, a, depth=5).json()
    ids = [n["id"] for n in g["nodes"]]
    assert sorted(ids) == sorted([a, b, c_]) and len(ids) == 3
    assert len(g["edges"]) == 4
    assert client.delete("/v1/graph/nodes/%s" % b).status == 204
    g = sub(client, a, depth=5).json()
    assert sorted(n["id"] for n in g["nodes"]) == sorted([a, c_])
    assert all(b not in (e["from"], e["to"]) for e in g["edges"])
    assert_error(client.get("/v1/graph/nodes/%s" % b), 404)


def test_limits_direction_types(client):
    hub = tl.unique_id("hub:")
    node(client, hub, "Topic")
    for i in range(30):
        n = "%s-%d" % (hub, i)
        node(client, n, "Product")
        edge(client, hub, n, "RELATED_TO" if i % 2 else "OTHER")
    g = sub(client, hub, depth=1, limit=10).json()
    assert len(g["nodes"]) == 10 and g["truncated"] is True
    g = sub(client, hub, depth=1, types="RELATED_TO").json()
    assert len(g["nodes"]) == 16 and all(e["type"] == "RELATED_TO" for e in g["edges"])
    g = sub(client, "%s-1" % hub, depth=1, direction="out").json()
    assert len(g["nodes"]) == 1
    g = sub(client, "%s-1" % hub, depth=1, direction="in").json()
    assert len(g["nodes"]) == 2
    g = sub(client, hub, depth=0).json()
    assert [n["id"] for n in g["nodes"]] == [hub] and g["edges"] == []


def test_bad_input_changes_nothing(client):
    u, t = tl.unique_id("user:"), tl.unique_id("topic:")
    node(client, u, "User")
    node(client, t, "Topic")
    assert_error(sub(client, "no-such-node"), 404)
    assert_error(sub(client, u, depth=6), 400)
    assert_error(sub(client, u, depth=-1), 400)
    assert_error(sub(client, u, direction="sideways"), 400)
    assert_error(client.get("/v1/graph/subgraph"), 400)
    assert_error(edge(client, u, "missing", "X"), 422)
    assert_error(edge(client, u, t, "X", [1, 2]), 400)
    assert_error(edge(client, u, t, "X", {"weight": "heavy"}), (400, 422))
    assert_error(edge(client, u, t, "X", {"weight": 1e999}), (400, 422))
    assert_error(client.request("PUT", "/v1/graph/edges",
                                body='{"from":"%s","to":"%s","type":"X","properties":{"weight":NaN}}'
                                % (u, t)), 400)
    assert_error(edge(client, u, t, "bad type!"), (400, 422))
    assert_error(node(client, u, "User", "not an object"), 400)
    assert_error(client.put("/v1/graph/nodes/%s" % u, {"properties": {}}), 400)
    assert_error(client.put("/v1/graph/nodes/bad%20id", {"label": "User"}), 400)
    assert sub(client, u, depth=1).json()["edges"] == []


def test_as_of_and_point_in_time_restore(make_server, tmp_path):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    node(c, "user:u1", "User")
    node(c, "topic:a", "Topic")
    node(c, "topic:b", "Topic")
    edge(c, "user:u1", "topic:a", "INTERESTED_IN", {"weight": 0.4})
    time.sleep(1.1)
    t1 = int(time.time())
    time.sleep(1.1)
    assert c.post("/v1/graph/edges/expire", {"from": "user:u1", "to": "topic:a",
                                             "type": "INTERESTED_IN"}).status == 200
    edge(c, "user:u1", "topic:b", "INTERESTED_IN", {"weight": 0.7})
    now = sub(c, "user:u1", depth=1).json()
    assert [e["to"] for e in now["edges"]] == ["topic:b"]
    then = sub(c, "user:u1", depth=1, as_of=t1).json()
    assert [e["to"] for e in then["edges"]] == ["topic:a"]
    assert_error(c.get("/v1/graph/nodes/topic:b?as_of=%d" % (t1 - 100)), 404)
    c.close()
    dst = str(tmp_path / "pitr")
    out = subprocess.run([CLI, "graph", "restore", "--data-dir", srv.data_dir, "--at", str(t1),
                          dst], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    restored = make_server(data_dir=dst)
    rc = restored.client()
    g = sub(rc, "user:u1", depth=1).json()
    strip = lambda x: sorted((e["from"], e["to"], e["type"], str(e["properties"]))
                             for e in x["edges"])
    assert strip(g) == strip(then)
    rc.close()


def test_acknowledged_graph_writes_survive_sigkill(make_server):
    srv = make_server(args=["--fsync", "always"])
    acked = []
    for round_ in range(5):
        c = srv.client()
        for i in range(30):
            nid = "r%d-n%d" % (round_, i)
            if node(c, nid, "Topic", {"i": i}).status in (200, 201):
                acked.append(nid)
                if i > 0:
                    prev = "r%d-n%d" % (round_, i - 1)
                    assert edge(c, prev, nid, "NEXT").status in (200, 201)
        c.close()
        srv.kill()
        srv.start()
    c = srv.client()
    for nid in acked:
        assert c.get("/v1/graph/nodes/%s" % nid).status == 200
    g = sub(c, "r4-n0", depth=5, direction="out").json()
    assert len(g["nodes"]) == 6
    c.close()
