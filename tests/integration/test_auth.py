"""Tenants and API keys over HTTP: the admin key manages keys; every route
acts for the key's tenant only (random cross-tenant probes read nothing of
another tenant); 401/403 never reveal what exists; revoked keys stop
working; per-key rate limiting answers 429 with Retry-After; the no-keys mode
is refused off loopback; keys survive restarts and are stored hashed."""

import os
import random
import subprocess

import pytest

import strata_testlib as tl
from strata_testlib import assert_error

ADMIN = "admin-secret-for-tests"


def hdr(key):
    return {"Authorization": "Bearer %s" % key}


def create_key(c, tenant):
    r = c.post("/v1/admin/tenants/%s/keys" % tenant, headers=hdr(ADMIN))
    assert r.status == 201, r.body
    body = r.json()
    assert body["tenant_id"] == tenant and body["key"].startswith("sk_")
    return body["key_id"], body["key"]


@pytest.fixture
def authed(make_server):
    return make_server(args=["--admin-key", ADMIN, "--fsync", "always"])


def test_admin_routes_need_the_admin_key(authed):
    c = authed.client()
    assert_error(c.post("/v1/admin/tenants/acme/keys"), 401, "unauthorized")
    assert_error(c.post("/v1/admin/tenants/acme/keys", headers=hdr("nope")), 403, "forbidden")
    kid, key = create_key(c, "acme")
    assert_error(c.post("/v1/admin/tenants/acme/keys", headers=hdr(key)), 403)
    r = c.get("/v1/admin/tenants/acme/keys", headers=hdr(ADMIN))
    assert r.status == 200 and [k["key_id"] for k in r.json()["keys"]] == [kid]
    assert_error(c.post("/v1/admin/tenants/bad%20id/keys", headers=hdr(ADMIN)), 400)
    # Health and metrics stay open.
    assert c.get("/healthz").status == 200
    assert c.get("/metrics").status == 200


def test_data_routes_need_a_tenant_key(authed):
    c = authed.client()
    assert_error(c.add_turn("s1", "u1", "hi"), 401, "unauthorized")
    assert_error(c.add_turn("s1", "u1", "hi", headers=hdr("sk_" + "0" * 64)), 401)
    assert_error(c.add_turn("s1", "u1", "hi", headers=hdr(ADMIN)), 403)
    _, key = create_key(c, "acme")
    assert c.add_turn("s1", "u1", "hi", headers=hdr(key)).status == 201


def test_tenants_are_isolated(authed):
    c = authed.client()
    _, ka = create_key(c, "tenant-a")
    _, kb = create_key(c, "tenant-b")
    rnd = random.Random(7)
    # Tenant A writes under ids that tenant B then probes.
    sessions, users, mems, nodes = [], [], [], []
    for i in range(20):
        sid, uid = "s-%d" % i, "u-%d" % i
        assert c.add_turn(sid, uid, "secret-a-%d I love hiking" % i, headers=hdr(ka)).status == 201
        r = c.post("/v1/users/%s/memories" % uid,
                   {"memory_type": "fact", "content": "secret-a-mem-%d" % i}, headers=hdr(ka))
        mems.append((uid, r.json()["id"]))
        assert c.request("PUT", "/v1/graph/nodes/n-%d" % i, json_body={"label": "Topic"},
                         headers=hdr(ka)).status in (200, 201)
        assert c.request("PUT", "/v1/kv/l1/k-%d" % i, json_body={"a": i},
                         headers=hdr(ka)).status == 200
        sessions.append(sid)
        users.append(uid)
        nodes.append("n-%d" % i)
    probes = 0
    job_a = c.post("/v1/sessions/%s/end" % sessions[0], headers=hdr(ka)).json()["job_id"]
    for _ in range(2000):
        i = rnd.randrange(20)
        kind = rnd.randrange(16)
        h = hdr(kb)
        if kind == 0:
            r = c.get("/v1/sessions/%s" % sessions[i], headers=h)
            # 404, or B's own session of that id (created by a kind-6 probe).
            assert r.status == 404 or (r.json()["user_id"] == "intruder" and
                                       "secret" not in r.body.decode())
        elif kind == 1:
            uid, mid = mems[i]
            assert c.get("/v1/users/%s/memories/%s" % (uid, mid), headers=h).status == 404
        elif kind == 2:
            r = c.post("/v1/users/%s/memories/search" % users[i], {"query": "secret"},
                       headers=h)
            assert r.status == 200 and r.json()["results"] == []
        elif kind == 3:
            assert c.get("/v1/graph/nodes/%s" % nodes[i], headers=h).status == 404
        elif kind == 4:
            assert c.get("/v1/kv/l1/k-%d" % i, headers=h).status == 404
        elif kind == 5:
            r = c.get("/v1/users/%s/profile" % users[i], headers=h)
            assert r.status == 200 and r.json()["attributes"] == {}
        elif kind == 7:
            # Forgetting A's user from B forgets nothing of A's.
            r = c.delete("/v1/users/%s/memory" % users[i], headers=h)
            assert r.status == 200, r.body
            d = r.json()["deleted"]
            assert d["l2"] == 0 and d["log"] == 0 and d["l1"] == 0, d
        elif kind == 8:
            r = c.get("/v1/users/%s/dirty" % users[i], headers=h)
            assert r.status == 200 and r.json()["attributes"] == []
        elif kind == 9:
            r = c.get("/v1/graph/subgraph?center=%s&depth=1" % nodes[i], headers=h)
            assert r.status == 404, r.body
        elif kind == 10:
            assert c.get("/v1/jobs/%s" % job_a, headers=h).status == 404
        elif kind == 11:
            uid, mid = mems[i]
            assert c.delete("/v1/users/%s/memories/%s" % (uid, mid), headers=h).status == 404
        elif kind == 12:
            assert c.delete("/v1/graph/nodes/%s" % nodes[i], headers=h).status == 404
        elif kind == 13:
            r = c.put("/v1/graph/edges", {"from": nodes[i], "to": nodes[(i + 1) % 20],
                                          "type": "RELATED_TO"}, headers=h)
            assert r.status in (404, 422), r.body
        elif kind == 14:
            r = c.post("/v1/sessions/%s/context" % sessions[i], {"query": "secret"}, headers=h)
            assert r.status in (200, 404), r.body
            assert "secret" not in r.body.decode()
        elif kind == 15:
            r = c.post("/v1/users/%s/clarifications/1" % users[i], {"choose": "old"}, headers=h)
            assert r.status == 404, r.body
        else:
            # Writing the same session id in B creates B's own session, not A's.
            r = c.add_turn(sessions[i], "intruder", "probe", headers=h)
            assert r.status == 201
        probes += 1
    assert probes == 2000
    # A still sees exactly its own data.
    s = c.get("/v1/sessions/s-0", headers=hdr(ka)).json()
    assert s["user_id"] == "u-0" and all("probe" not in t["content"] for t in s["buffer"])
    for uid, mid in mems:
        assert c.get("/v1/users/%s/memories/%s" % (uid, mid), headers=hdr(ka)).status == 200


def test_revoked_keys_stop_working_and_keys_survive_restart(authed):
    c = authed.client()
    kid, key = create_key(c, "acme")
    kid2, key2 = create_key(c, "acme")
    assert c.add_turn("s1", "u1", "hi", headers=hdr(key)).status == 201
    assert c.delete("/v1/admin/keys/%s" % kid, headers=hdr(ADMIN)).status == 204
    assert_error(c.add_turn("s1", "u1", "hi", headers=hdr(key)), 401)
    assert_error(c.delete("/v1/admin/keys/%s" % kid, headers=hdr(ADMIN)), 404)
    c.close()
    authed.restart(graceful=False)
    c = authed.client()
    assert_error(c.get("/v1/sessions/s1", headers=hdr(key)), 401)
    assert c.get("/v1/sessions/s1", headers=hdr(key2)).status == 200
    c.close()
    # Only hashes are stored: the secret is in no file under the data directory.
    for root, _, files in os.walk(authed.data_dir):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert key2.encode() not in fh.read()


def test_rate_limit(make_server):
    srv = make_server(args=["--admin-key", ADMIN, "--rate-limit", "5"])
    c = srv.client()
    _, key = create_key(c, "acme")
    statuses = [c.get("/v1/users/u1/dirty", headers=hdr(key)).status for _ in range(20)]
    assert statuses.count(200) >= 5 and 429 in statuses
    r = c.get("/v1/users/u1/dirty", headers=hdr(key))
    if r.status == 429:
        assert int(r.header("Retry-After")) >= 1
        assert_error(r, 429, "rate_limited")


def test_no_keys_mode_refused_off_loopback(tmp_path):
    p = subprocess.run([tl.STRATAD, "--host", "0.0.0.0", "--port", str(tl.free_port()),
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert "authentication" in p.stderr


def test_cli_admin_keys(authed):
    cli = os.environ.get("STRATA_CLI", os.path.join(os.path.dirname(tl.STRATAD), "strata"))
    base = [cli, "--url", authed.url, "--api-key", ADMIN, "--json"]
    out = subprocess.run(base + ["admin", "key", "create", "acme"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    import json
    created = json.loads(out.stdout)
    out = subprocess.run(base + ["admin", "key", "list", "acme"], capture_output=True,
                         text=True, timeout=30)
    assert created["key_id"] in out.stdout
    out = subprocess.run([cli, "--url", authed.url, "--api-key", created["key"], "turn", "add",
                          "s1", "--user", "u1", "hello"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(base + ["admin", "key", "revoke", created["key_id"]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([cli, "--url", authed.url, "--api-key", created["key"], "session",
                          "show", "s1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "401" in out.stderr
