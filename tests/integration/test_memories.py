"""L2 memories over HTTP: add, get, delete, search in each mode, filters,
provenance, tenant/user isolation, persistence across restarts (graceful,
from the log alone, and after SIGKILL), and bad input that stores nothing."""

import json
import math
import os
import shutil
import time

import pytest

import strata_testlib as tl
from strata_testlib import assert_error


def add(client, uid, content, mtype="fact", importance=0.5, provenance=None, **extra):
    body = {"memory_type": mtype, "content": content, "importance": importance}
    if provenance is not None:
        body["provenance"] = provenance
    body.update(extra)
    return client.post("/v1/users/%s/memories" % uid, body)


def search(client, uid, query, **kw):
    body = {"query": query}
    body.update(kw)
    return client.post("/v1/users/%s/memories/search" % uid, body)


CORPUS = [
    ("preference", "User prefers concise answers without small talk", 0.8),
    ("fact", "User works as a senior developer at Acme Corp", 0.7),
    ("fact", "User lives in Lisbon, Portugal", 0.6),
    ("preference", "User loves hiking in the mountains on weekends", 0.5),
    ("experience", "User visited Japan in spring 2023 and loved the food", 0.4),
    ("fact", "User is allergic to peanuts", 0.9),
    ("preference", "User dislikes long meetings", 0.3),
]


@pytest.fixture
def loaded(client, uid):
    ids = []
    for mtype, content, imp in CORPUS:
        r = add(client, uid, content, mtype, imp, provenance=["turn-%d" % len(ids)])
        assert r.status == 201, r.body
        ids.append(r.json()["id"])
    return uid, ids


def test_add_returns_the_memory(client, uid):
    r = add(client, uid, "User prefers tea over coffee", "preference", 0.75, ["t1", "t2"])
    assert r.status == 201, r.body
    m = r.json()
    assert m["id"].startswith("mem-")
    assert m["user_id"] == uid
    assert m["memory_type"] == "preference"
    assert m["content"] == "User prefers tea over coffee"
    assert math.isclose(m["importance"], 0.75, abs_tol=1e-6)
    assert isinstance(m["timestamp"], int) and m["timestamp"] > 1600000000
    assert m["provenance"] == ["t1", "t2"]
    g = client.get("/v1/users/%s/memories/%s" % (uid, m["id"]))
    assert g.status == 200
    assert g.json()["content"] == m["content"]
    assert g.json()["provenance"] == ["t1", "t2"]


def test_importance_defaults_and_unicode(client, uid):
    r = client.post("/v1/users/%s/memories" % uid,
                    {"memory_type": "fact", "content": "Usuário mora em São Paulo 🌴"})
    assert r.status == 201, r.body
    assert r.json()["content"] == "Usuário mora em São Paulo 🌴"
    assert 0.0 <= r.json()["importance"] <= 1.0


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_search_modes_find_the_relevant_memory(client, loaded, mode):
    uid, ids = loaded
    r = search(client, uid, "which food allergy does the user have? peanuts", mode=mode, limit=3)
    assert r.status == 200, r.body
    res = r.json()["results"]
    assert 1 <= len(res) <= 3
    assert res[0]["content"] == "User is allergic to peanuts"
    scores = [x["score"] for x in res]
    assert scores == sorted(scores, reverse=True)
    for x in res:
        assert set(["id", "memory_type", "content", "score", "timestamp", "importance",
                    "provenance"]) <= set(x)


def test_search_default_limit_is_five(client, loaded):
    uid, _ = loaded
    r = search(client, uid, "user")
    assert r.status == 200
    assert len(r.json()["results"]) == 5


def test_search_filters(client, loaded):
    uid, _ = loaded
    r = search(client, uid, "user", memory_types=["preference"], limit=50)
    res = r.json()["results"]
    assert res and all(x["memory_type"] == "preference" for x in res)
    assert len(res) == 3
    r = search(client, uid, "user", min_importance=0.65, limit=50, mode="vector")
    res = r.json()["results"]
    assert res and all(x["importance"] >= 0.65 for x in res)
    assert len(res) == 3
    r = search(client, uid, "user", memory_types=["experience", "fact"], limit=50,
               mode="keyword")
    assert all(x["memory_type"] in ("experience", "fact") for x in r.json()["results"])


def test_user_without_memories_gets_empty_list(client):
    r = search(client, tl.unique_id("nobody"), "anything")
    assert r.status == 200
    assert r.json() == {"results": []}


def test_users_and_memories_are_isolated(client, loaded):
    uid, ids = loaded
    other = tl.unique_id("u")
    assert add(client, other, "Other user likes peanuts a lot", "preference").status == 201
    res = search(client, other, "peanuts", limit=50).json()["results"]
    assert [x["content"] for x in res] == ["Other user likes peanuts a lot"]
    # Another user cannot read or delete this user's memory by id.
    assert client.get("/v1/users/%s/memories/%s" % (other, ids[0])).status == 404
    assert client.delete("/v1/users/%s/memories/%s" % (other, ids[0])).status == 404
    assert client.get("/v1/users/%s/memories/%s" % (uid, ids[0])).status == 200


def test_delete(client, loaded):
    uid, ids = loaded
    r = client.delete("/v1/users/%s/memories/%s" % (uid, ids[5]))
    assert r.status == 204
    assert client.get("/v1/users/%s/memories/%s" % (uid, ids[5])).status == 404
    res = search(client, uid, "peanuts allergy", limit=50).json()["results"]
    assert all(x["id"] != ids[5] for x in res)
    assert_error(client.delete("/v1/users/%s/memories/%s" % (uid, ids[5])), 404)
    assert_error(client.get("/v1/users/%s/memories/mem-zz" % uid), 404)


def test_search_by_query_vector(client, loaded, server):
    uid, _ = loaded
    dim = 384
    vec = [0.0] * dim
    vec[3] = 1.0
    r = search(client, uid, "", mode="vector", query_vector=vec, limit=3)
    # "query" empty but a vector given: allowed for vector mode.
    assert r.status == 200, r.body
    assert len(r.json()["results"]) == 3
    bad = search(client, uid, "x", mode="vector", query_vector=[1.0, 2.0])
    assert_error(bad, (400, 422))


BAD_ADDS = [
    ({"memory_type": "opinion", "content": "x"}, (400, 422)),
    ({"memory_type": "fact", "content": ""}, (400, 422)),
    ({"memory_type": "fact"}, (400,)),
    ({"content": "x"}, (400,)),
    ({"memory_type": "fact", "content": "x", "importance": 1.5}, (400, 422)),
    ({"memory_type": "fact", "content": "x", "importance": -0.1}, (400, 422)),
    ({"memory_type": "fact", "content": "x", "importance": "high"}, (400, 422)),
    ({"memory_type": "fact", "content": 5}, (400, 422)),
    ({"memory_type": "fact", "content": "x", "extra": 1}, (400,)),
    ({"memory_type": "fact", "content": "x", "provenance": "t1"}, (400, 422)),
    ({"memory_type": "fact", "content": "x", "provenance": [1]}, (400, 422)),
    ({"memory_type": "fact", "content": "x", "vector": [0.1]}, (400, 422)),
]


@pytest.mark.parametrize("body,statuses", BAD_ADDS)
def test_bad_adds_store_nothing(client, uid, body, statuses):
    r = client.post("/v1/users/%s/memories" % uid, body)
    assert_error(r, statuses)
    assert search(client, uid, "x", limit=10).json()["results"] == []


def test_bad_add_raw_bodies(client, uid):
    path = "/v1/users/%s/memories" % uid
    assert_error(client.request("POST", path, body=b"{not json"), 400)
    assert_error(client.request("POST", path, body=b'{"memory_type":"fact","content":"\xff"}'),
                 400)
    assert_error(client.request("POST", path, body=b'{"memory_type":"fact","content":"x"}',
                                content_type="text/plain"), 415)
    nan = b'{"memory_type":"fact","content":"x","importance":NaN}'
    assert_error(client.request("POST", path, body=nan), 400)
    assert_error(client.post("/v1/users/bad%20id/memories",
                             {"memory_type": "fact", "content": "x"}), 400)
    assert search(client, uid, "x", limit=10).json()["results"] == []


BAD_SEARCHES = [
    {"query": "x", "limit": 0},
    {"query": "x", "limit": 1001},
    {"query": "x", "limit": -3},
    {"query": "x", "limit": "5"},
    {"query": "x", "mode": "semantic"},
    {"query": "x", "memory_types": ["opinion"]},
    {"query": "x", "memory_types": "fact"},
    {"query": "x", "min_importance": 2},
    {"query": "x", "unknown": True},
    {"query": 42},
    {},
    {"query": "x", "query_vector": [float("inf")] * 384, "mode": "vector"},
    {"query": "x", "query_vector": [0.0] * 384, "mode": "vector"},
]


@pytest.mark.parametrize("body", BAD_SEARCHES)
def test_bad_searches(client, uid, body):
    path = "/v1/users/%s/memories/search" % uid
    payload = json.dumps(body).replace("Infinity", "1e999").encode()
    assert_error(client.request("POST", path, body=payload), (400, 422))


def test_memories_survive_restarts(make_server):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    uid = tl.unique_id("u")
    ids = []
    for mtype, content, imp in CORPUS:
        ids.append(add(c, uid, content, mtype, imp, ["p"]).json()["id"])
    c.delete("/v1/users/%s/memories/%s" % (uid, ids[1]))
    before = search(c, uid, "hiking mountains", limit=10).json()["results"]
    c.close()
    # 1. graceful restart (snapshot + log)
    srv.restart(graceful=True)
    c = srv.client()
    after = search(c, uid, "hiking mountains", limit=10).json()["results"]
    assert [x["id"] for x in after] == [x["id"] for x in before]
    c.close()
    # 2. from the log alone
    srv.stop()
    shutil.rmtree(os.path.join(srv.data_dir, "snap"))
    srv.start()
    c = srv.client()
    after = search(c, uid, "hiking mountains", limit=10).json()["results"]
    assert [x["id"] for x in after] == [x["id"] for x in before]
    assert c.get("/v1/users/%s/memories/%s" % (uid, ids[1])).status == 404
    # 3. SIGKILL right after acknowledged writes
    extra = add(c, uid, "User bought a new bicycle", "experience", 0.5).json()["id"]
    c.close()
    srv.kill()
    srv.start()
    c = srv.client()
    assert c.get("/v1/users/%s/memories/%s" % (uid, extra)).status == 200
    m = c.metrics().body.decode()
    assert "strata_l2_memories" in m
    c.close()


def test_dimension_mismatch_is_a_startup_error(make_server, tmp_path):
    srv = make_server(args=["--embed-dim", "64"])
    c = srv.client()
    assert add(c, "u1", "User likes tea").status == 201
    c.close()
    srv.stop()
    srv.args = [a for a in srv.args if a not in ("--embed-dim", "64")]
    srv.args += ["--embed-dim", "128"]
    with pytest.raises(Exception):
        srv.start()
    assert "dimension" in srv.log_text()


def test_acknowledged_memories_survive_sigkill(make_server):
    """Writers add memories while the server is killed at random moments:
    every acknowledged (201) memory is there after each restart."""
    import random
    import threading
    srv = make_server(args=["--fsync", "always"])
    rnd = random.Random(11)
    acked = []
    lock = threading.Lock()
    for round_ in range(10):
        stop = threading.Event()

        def writer(n):
            c = srv.client()
            i = 0
            while not stop.is_set():
                try:
                    r = add(c, "crash-u%d" % n, "memory %d-%d-%d" % (round_, n, i))
                except Exception:
                    return
                if r.status == 201:
                    with lock:
                        acked.append(("crash-u%d" % n, r.json()["id"]))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.05, 0.3))
        srv.kill()
        stop.set()
        for t in threads:
            t.join()
        srv.start()
        c = srv.client()
        for uid, mid in acked:
            r = c.get("/v1/users/%s/memories/%s" % (uid, mid))
            assert r.status == 200, (round_, uid, mid)
        c.close()
    assert len(acked) > 20


def test_collection_refuses_another_embedder(make_server):
    """A collection built with one embedder refuses another of the same
    dimension (vectors would mix silently); the model missing falls back to
    the built-in embedder, which then matches."""
    root = os.environ.get("STRATA_SOURCE_DIR",
                          os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    model = os.path.join(root, "models", "all-MiniLM-L6-v2")
    srv = make_server()
    c = srv.client()
    assert add(c, "u1", "User likes tea").status == 201
    c.close()
    srv.stop()
    srv.args += ["--embedder", "minilm", "--model-dir", "/nonexistent/model"]
    srv.start()  # no model: falls back to the hashing embedder, same collection
    assert "falls back" in srv.log_text() or "hashing" in srv.log_text()
    srv.stop()
    if not os.path.isfile(os.path.join(model, "model.safetensors")):
        pytest.skip("no MiniLM model fetched (scripts/fetch_model.sh)")
    srv.args[-1] = model
    with pytest.raises(Exception):
        srv.start()
    assert "embedded with" in srv.log_text()


def test_reembed_moves_a_collection_to_another_embedder(make_server, tmp_path):
    import subprocess
    cli = os.environ.get("STRATA_CLI", os.path.join(os.path.dirname(tl.STRATAD), "strata"))
    srv = make_server(args=["--embed-dim", "64"])
    c = srv.client()
    ids = [add(c, "u1", content, mtype, imp).json()["id"] for mtype, content, imp in CORPUS]
    c.close()
    srv.stop()
    dst = str(tmp_path / "reembedded")
    out = subprocess.run([cli, "reembed", "--data-dir", srv.data_dir, "--embedder", "hash",
                          "--embed-dim", "128", dst], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "re-embedded" in out.stdout
    again = make_server(data_dir=dst, args=["--embed-dim", "128"])
    c = again.client()
    for mid in ids:
        assert c.get("/v1/users/u1/memories/%s" % mid).status == 200
    r = search(c, "u1", "allergic peanuts", mode="vector", limit=1)
    assert r.json()["results"][0]["content"] == "User is allergic to peanuts"
    c.close()
    bad = subprocess.run([cli, "reembed", "--data-dir", srv.data_dir, "--embedder", "hash", dst],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0  # the target must be new


def test_auto_embedder_follows_the_collection(make_server):
    root = os.environ.get("STRATA_SOURCE_DIR",
                          os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    model = os.path.join(root, "models", "all-MiniLM-L6-v2")
    # An existing hashing collection stays on the hashing embedder under auto.
    srv = make_server(args=["--embed-dim", "64"])
    c = srv.client()
    assert add(c, "u1", "User likes tea").status == 201
    c.close()
    srv.stop()
    srv.args = ["--embedder", "auto", "--model-dir", model]
    srv.start()
    c = srv.client()
    assert add(c, "u1", "User likes coffee").status == 201
    c.close()
    srv.stop()
    with open(os.path.join(srv.data_dir, "l2.model")) as f:
        assert f.read().strip() == "hash-v1-64"
    if not os.path.isfile(os.path.join(model, "model.safetensors")):
        pytest.skip("no MiniLM model fetched (scripts/fetch_model.sh)")
    # A new collection gets the neural embedder when its model is present.
    fresh = make_server(args=["--embedder", "auto", "--model-dir", model])
    c = fresh.client()
    assert add(c, "u1", "User loves hiking in the mountains").status == 201
    r = search(c, "u1", "outdoor activities", mode="vector", limit=1)
    assert r.json()["results"][0]["content"] == "User loves hiking in the mountains"
    c.close()
    fresh.stop()
    with open(os.path.join(fresh.data_dir, "l2.model")) as f:
        assert f.read().strip() == "all-MiniLM-L6-v2"
