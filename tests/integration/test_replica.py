"""Replication by log shipping: a primary and a replica (`stratad
--replica-of`) on loopback ports.

  * the replica bootstraps, converges and answers like the primary (sessions,
    memories, profile, graph, kv), refuses every write with 503 read_only and
    changes nothing, and reports lag metrics that reach 0;
  * failover: SIGKILL the primary while writers run, read the replica's
    metrics, promote it: every write acknowledged with an LSN up to the
    replica's applied LSN is there, the missing ones all lie past it, and
    those the replica had been told about are at most the reported lag;
    writes then work on the promoted server;
  * a primary whose log was pruned answers 410 to a reader from LSN 0, and an
    empty replica still starts, from the primary's snapshot;
  * a wrong replica key: unauthorized in the log and the metrics, nothing
    applied; the replication routes' own input checks.
"""

import threading
import time

import strata_testlib as tl

ADMIN = "primary-admin-secret"
REPL = "replication-only-secret"


def hdr(key):
    return {"Authorization": "Bearer " + key}


def start_primary(make_server, extra=None):
    srv = make_server(args=["--admin-key", ADMIN, "--replication-key", REPL,
                            "--consolidate-every", "2"] + (extra or []))
    c = srv.client()
    r = c.post("/v1/admin/tenants/acme/keys", headers=hdr(ADMIN))
    assert r.status == 201, r
    c.close()
    return srv, r.json()["key"]


def start_replica(make_server, primary, key=REPL, extra=None, wait=True):
    return make_server(args=["--admin-key", "replica-admin", "--consolidate-every", "2",
                             "--replica-of", "127.0.0.1:%d" % primary.port,
                             "--replica-key", key] + (extra or []), start=True)


def metrics(srv):
    c = srv.client()
    try:
        samples = tl.parse_metrics(c.metrics().body.decode())
    finally:
        c.close()
    return {(n if not labels else "%s%s" % (n, sorted(labels.items()))): v
            for n, labels, v in samples}


def last_lsn(srv):
    return metrics(srv)["strata_log_last_lsn"]


def wait_caught_up(primary, replica, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = last_lsn(primary)
        m = metrics(replica)
        if m.get("strata_replica_applied_lsn") == p and m.get("strata_replica_lag_records") == 0:
            return m
        time.sleep(0.05)
    raise AssertionError("replica did not catch up: primary %s, replica %s"
                         % (last_lsn(primary), metrics(replica)))


def same(pc, rc, path, key, method="GET", body=None):
    a = pc.request(method, path, json_body=body, headers=hdr(key))
    b = rc.request(method, path, json_body=body, headers=hdr(key))
    assert a.status == b.status == 200, (path, a, b)
    return a.json(), b.json()


def test_replica_converges_reads_and_refuses_writes(make_server):
    primary, key = start_primary(make_server)
    pc = primary.client()
    # some history before the replica exists (it starts from a snapshot)
    for i in range(6):
        assert pc.add_turn("s-early", "u1", "I love hiking in the Alps and I work at Acme",
                           headers=hdr(key)).status == 201
    replica = start_replica(make_server, primary)
    rc = replica.client()
    # and more after, some of it through the pipeline (consolidation jobs run
    # on the primary only; their results arrive through the log)
    for i in range(6):
        assert pc.add_turn("s-late", "u1", "I prefer tea over coffee, turn %d" % i,
                           headers=hdr(key)).status == 201
    assert pc.post("/v1/sessions/s-late/end", headers=hdr(key)).status == 202
    r = pc.post("/v1/users/u1/memories", {"memory_type": "fact", "content": "u1 owns a red kayak",
                                          "importance": 0.9}, headers=hdr(key))
    assert r.status == 201
    mem_id = r.json()["id"]
    for node in ("user:u1", "topic:kayak"):
        assert pc.put("/v1/graph/nodes/" + node, {"label": "Topic", "properties": {"n": node}},
                      headers=hdr(key)).status in (200, 201)
    assert pc.put("/v1/graph/edges", {"from": "user:u1", "to": "topic:kayak",
                                      "type": "INTERESTED_IN", "properties": {"weight": 0.5}},
                  headers=hdr(key)).status in (200, 201)
    assert pc.put("/v1/kv/l3/cfg", {"a": [1, 2]}, headers=hdr(key)).status == 200
    # wait for the primary's jobs to finish, then for the replica
    deadline = time.monotonic() + 15
    while metrics(primary)["strata_jobs_queued"] + metrics(primary)["strata_jobs_running"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    m = wait_caught_up(primary, replica)
    assert m["strata_replica_connected"] == 1
    assert m["strata_replica_lag_seconds"] == 0
    assert m["strata_role[('role', 'replica')]"] == 1
    assert m["strata_role[('role', 'primary')]"] == 0
    assert metrics(primary)["strata_role[('role', 'primary')]"] == 1
    # the replica ran no job of its own: every one it knows the primary finished
    assert m["strata_jobs_running"] == 0

    for path in ("/v1/sessions/s-early", "/v1/sessions/s-late", "/v1/users/u1/profile",
                 "/v1/users/u1/memories/" + mem_id, "/v1/graph/nodes/user:u1",
                 "/v1/graph/subgraph?center=user:u1&depth=2", "/v1/kv/l3/cfg",
                 "/v1/users/u1/dirty"):
        a, b = same(pc, rc, path, key)
        assert a == b, path
    a, b = same(pc, rc, "/v1/users/u1/memories/search", key, "POST",
                {"query": "kayak tea hiking", "limit": 10})
    assert [x["id"] for x in a["results"]] == [x["id"] for x in b["results"]]
    assert len(a["results"]) >= 2          # the consolidated memories came across

    # writes are refused and change nothing
    before = last_lsn(replica)
    writes = [
        ("POST", "/v1/sessions/s-late/turns", {"user_id": "u1", "role": "user", "content": "x"}),
        ("PATCH", "/v1/sessions/s-late/state", {"current_stage": "x"}),
        ("POST", "/v1/users/u1/memories", {"memory_type": "fact", "content": "x",
                                           "importance": 0.1}),
        ("DELETE", "/v1/users/u1/memories/" + mem_id, None),
        ("PUT", "/v1/graph/nodes/n-x", {"label": "Topic", "properties": {}}),
        ("PUT", "/v1/kv/l1/k", {"v": 1}),
        ("POST", "/v1/jobs/distill", {}),
    ]
    for method, path, body in writes:
        r = rc.request(method, path, json_body=body, headers=hdr(key))
        tl.assert_error(r, 503, "read_only")
    r = rc.post("/v1/admin/tenants/other/keys", headers=hdr("replica-admin"))
    tl.assert_error(r, 503, "read_only")
    time.sleep(0.1)
    assert last_lsn(replica) == before == last_lsn(primary)
    assert rc.get("/v1/users/u1/memories/" + mem_id, headers=hdr(key)).status == 200
    r = rc.get("/v1/admin/replication", headers=hdr("replica-admin"))
    assert r.status == 200 and r.json()["role"] == "replica"
    assert r.json()["replica"]["lag_records"] == 0
    # promoting a primary is refused
    tl.assert_error(pc.post("/v1/admin/promote", headers=hdr(ADMIN)), 409)
    # a restarted replica follows on from its own log (no new bootstrap)
    rc.close()
    replica.restart()
    assert pc.add_turn("s-late", "u1", "after the replica restarted",
                       headers=hdr(key)).status == 201
    wait_caught_up(primary, replica)
    rc = replica.client()
    a, b = same(pc, rc, "/v1/sessions/s-late", key)
    assert a == b
    assert replica.log_text().count("bootstrapped") == 0
    tl.assert_error(rc.put("/v1/kv/l1/k", {"v": 1}, headers=hdr(key)), 503, "read_only")
    pc.close()
    rc.close()


def test_failover_loses_at_most_the_reported_lag(make_server):
    primary, key = start_primary(make_server, ["--fsync", "everysec"])
    replica = start_replica(make_server, primary)
    stop = threading.Event()
    acked = {}                 # lsn -> content (a memory's id is its LSN)
    lock = threading.Lock()

    def writer(tag):
        c = primary.client()
        i = 0
        while not stop.is_set():
            content = "failover %s %d" % (tag, i)
            try:
                r = c.post("/v1/users/u-f/memories", {"memory_type": "fact", "content": content,
                                                      "importance": 0.2},
                           headers=hdr(key), retry=False)
            except Exception:
                return             # the primary is gone
            if r.status != 201:
                return
            with lock:
                acked[int(r.json()["id"].split("-", 1)[1], 16)] = (content, time.time())
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    time.sleep(0.8)
    primary.kill()
    stop.set()
    for t in threads:
        t.join(10)
    m = metrics(replica)
    applied = m["strata_replica_applied_lsn"]
    told = m["strata_replica_primary_lsn"]
    lag = m["strata_replica_lag_records"]
    contact = m["strata_replica_last_contact_timestamp_seconds"]
    assert lag == told - applied
    assert len(acked) > 20
    time.sleep(0.3)
    m = metrics(replica)
    assert m["strata_replica_connected"] == 0
    assert m["strata_replica_lag_seconds"] > 0       # it no longer knows it is current
    assert m["strata_replica_applied_lsn"] == applied  # nothing more can arrive

    res = tl.run_cli(["admin", "promote"], url=replica.url, env={"STRATA_API_KEY": "replica-admin"})
    assert res.returncode == 0, res.stderr
    assert "promoted" in res.stdout
    rc = replica.client()
    missing = []
    for lsn, (content, _) in sorted(acked.items()):
        r = rc.get("/v1/users/u-f/memories/mem-%016x" % lsn, headers=hdr(key))
        if lsn <= applied:
            assert r.status == 200 and r.json()["content"] == content, (lsn, r)
        elif r.status == 404:
            missing.append(lsn)
    # Lost: only writes past what was shipped; of those the replica had been
    # told about, no more than the lag it reported; the rest were acknowledged
    # after its last contact (async replication's window, a poll period).
    assert all(lsn > applied for lsn in missing)
    assert len([x for x in missing if x <= told]) <= lag
    unknown = [x for x in missing if x > told]
    assert all(acked[x][1] > contact - 0.01 for x in unknown), (
        "a write the replica was never told about was acknowledged before its last contact",
        applied, told, contact, [(x, acked[x][1]) for x in unknown][:5])

    # the promoted server takes writes, after the LSNs it has
    r = rc.post("/v1/users/u-f/memories", {"memory_type": "fact", "content": "after failover",
                                           "importance": 0.5}, headers=hdr(key))
    assert r.status == 201, r
    assert int(r.json()["id"].split("-", 1)[1], 16) == applied + 1
    assert rc.add_turn("s-after", "u-f", "hello", headers=hdr(key)).status == 201
    m = metrics(replica)
    assert m["strata_role[('role', 'primary')]"] == 1
    tl.assert_error(rc.post("/v1/admin/promote", headers=hdr("replica-admin")), 409)
    rc.close()
    # the promotion is remembered: started again as a replica it refuses
    replica.stop()
    try:
        replica.start()
        raise AssertionError("a promoted data directory started as a replica")
    except tl.ServerDied as e:
        assert "was promoted" in str(e)


def test_bootstrap_from_snapshot_when_the_log_was_pruned(make_server):
    primary, key = start_primary(make_server, ["--segment-max-bytes", "4096", "--retention",
                                               "0", "--snapshot-every", "1"])
    pc = primary.client()
    for i in range(120):
        assert pc.add_turn("s-%d" % (i % 4), "u%d" % (i % 4), "pruned history %d " % i + "x" * 60,
                           headers=hdr(key)).status == 201
    deadline = time.monotonic() + 10
    while metrics(primary)["strata_log_segments_dropped_total"] == 0:
        assert time.monotonic() < deadline, "the primary never dropped a segment"
        time.sleep(0.1)
    r = pc.get("/v1/admin/replication/log?after=0", headers=hdr(REPL))
    tl.assert_error(r, 410, "gone")
    replica = start_replica(make_server, primary)
    assert "bootstrapped" in replica.log_text()
    assert pc.add_turn("s-0", "u0", "after the bootstrap", headers=hdr(key)).status == 201
    wait_caught_up(primary, replica)
    rc = replica.client()
    for i in range(4):
        a, b = same(pc, rc, "/v1/sessions/s-%d" % i, key)
        assert a == b
    pc.close()
    rc.close()


def test_wrong_replica_key_applies_nothing(make_server):
    primary, key = start_primary(make_server)
    pc = primary.client()
    assert pc.add_turn("s1", "u1", "secret history", headers=hdr(key)).status == 201
    replica = start_replica(make_server, primary, key="not-the-key")
    deadline = time.monotonic() + 10
    while metrics(replica).get("strata_replica_errors_total[('kind', 'unauthorized')]", 0) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    m = metrics(replica)
    assert m["strata_replica_connected"] == 0
    assert m["strata_replica_applied_lsn"] == 0 and m["strata_log_last_lsn"] == 0
    assert "unauthorized" in replica.log_text()
    rc = replica.client()
    # nothing came across, not even the tenant's key
    tl.assert_error(rc.get("/v1/sessions/s1", headers=hdr(key)), 401)
    # the replication routes' own checks, on the primary
    tl.assert_error(pc.get("/v1/admin/replication/log?after=0"), 401)
    tl.assert_error(pc.get("/v1/admin/replication/log?after=0", headers=hdr(key)), 403)
    tl.assert_error(pc.get("/v1/admin/replication/log", headers=hdr(REPL)), 400)
    tl.assert_error(pc.get("/v1/admin/replication/log?after=abc", headers=hdr(REPL)), 400)
    tl.assert_error(pc.get("/v1/admin/replication/log?after=0&wait_ms=99999",
                           headers=hdr(REPL)), 400)
    tl.assert_error(pc.get("/v1/admin/replication/files/..%2Fsecret", headers=hdr(REPL)), 400)
    tl.assert_error(pc.get("/v1/admin/replication/files/kv-00000000000000099999.snap",
                           headers=hdr(REPL)), 404)
    # the replication key reads the log but cannot manage tenants
    tl.assert_error(pc.post("/v1/admin/tenants/x/keys", headers=hdr(REPL)), 403)
    r = pc.get("/v1/admin/replication/log?after=0&max_bytes=1", headers=hdr(REPL))
    assert r.status == 200 and r.header("Content-Type") == "application/octet-stream"
    assert int(r.header("X-Strata-Last-Lsn")) >= 2 and len(r.body) > 32   # one record at least
    pc.close()
    rc.close()


def test_replica_of_a_tls_primary(make_server, tmp_path):
    import http.client
    import json
    import shutil
    import ssl
    if shutil.which("openssl") is None:
        import pytest
        pytest.skip("the openssl tool is needed to make certificates")
    from test_tls import make_cert, wait_https
    cert, key_file = make_cert(tmp_path, "primary")
    primary = make_server(args=["--tls-cert", cert, "--tls-key", key_file, "--admin-key", ADMIN,
                                "--replication-key", REPL, "--consolidate-every", "2"],
                          start=False)
    primary.start(wait=False)
    wait_https(primary, cert)

    def call(method, path, body=None, key=ADMIN):
        conn = http.client.HTTPSConnection("127.0.0.1", primary.port, timeout=10,
                                           context=ssl.create_default_context(cafile=cert))
        try:
            headers = dict(hdr(key))
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    status, body = call("POST", "/v1/admin/tenants/acme/keys")
    assert status == 201
    key = body["key"]
    status, _ = call("POST", "/v1/sessions/s-tls/turns",
                     {"user_id": "u1", "role": "user", "content": "over TLS"}, key)
    assert status == 201
    url = "https://127.0.0.1:%d" % primary.port
    # Without the CA the primary's certificate is not trusted: nothing is applied.
    untrusting = make_server(args=["--admin-key", "replica-admin", "--consolidate-every", "2",
                                   "--replica-of", url, "--replica-key", REPL])
    replica = make_server(args=["--admin-key", "replica-admin", "--consolidate-every", "2",
                                "--replica-of", url, "--replica-key", REPL,
                                "--replica-cacert", cert])
    rc = replica.client()
    deadline = time.monotonic() + 10
    while rc.get("/v1/sessions/s-tls", headers=hdr(key)).status != 200:
        assert time.monotonic() < deadline, replica.log_tail()
        time.sleep(0.05)
    s = rc.get("/v1/sessions/s-tls", headers=hdr(key)).json()
    assert s["buffer"][0]["content"] == "over TLS"
    m = metrics(untrusting)
    assert m["strata_replica_applied_lsn"] == 0 and m["strata_replica_connected"] == 0
    assert m["strata_replica_errors_total[('kind', 'connect')]"] >= 1
    rc.close()


def test_forget_reaches_the_replica_and_its_files(make_server):
    """A right-to-be-forgotten on the primary reaches an attached replica: the
    primary waits for it to fetch the deletion before erasing its own record,
    and the replica erases the user's records from its own log and
    snapshots too."""
    import os
    import uuid
    primary, key = start_primary(make_server)
    replica = start_replica(make_server, primary)
    pc, rc = primary.client(), replica.client()
    uid, other = "u-" + uuid.uuid4().hex[:8], "u-" + uuid.uuid4().hex[:8]
    mk = "zq" + uuid.uuid4().hex[:12]
    for u, text in ((uid, "I love %s." % mk), (other, "I love hiking.")):
        for i in range(3):
            assert pc.add_turn("s-%s" % u, u, text, headers=hdr(key)).status == 201
        r = pc.post("/v1/users/%s/memories" % u, {"memory_type": "fact",
                                                 "content": "note %s" % text},
                    headers=hdr(key))
        assert r.status == 201
    wait_caught_up(primary, replica)
    replica.stop()
    replica.start()  # the replica now has snapshots holding the user, too
    rc = replica.client()
    wait_caught_up(primary, replica)
    r = pc.delete("/user/%s/memory" % uid, headers=hdr(key))
    assert r.status == 200 and r.json()["deleted"]["l2"] >= 1, r.body
    wait_caught_up(primary, replica)
    r = rc.post("/v1/users/%s/memories/search" % uid, {"query": "note", "mode": "keyword"},
                headers=hdr(key))
    assert r.status == 200 and r.json()["results"] == []
    assert rc.get("/v1/sessions/s-%s" % uid, headers=hdr(key)).status == 404
    r = rc.post("/v1/users/%s/memories/search" % other, {"query": "note", "mode": "keyword"},
                headers=hdr(key))
    assert len(r.json()["results"]) == 1
    deadline = time.monotonic() + 10
    for srv in (primary, replica):
        while True:
            hits = []
            for root, _, names in os.walk(srv.data_dir):
                for n in names:
                    try:
                        with open(os.path.join(root, n), "rb") as f:
                            if mk.encode() in f.read():
                                hits.append(os.path.join(root, n))
                    except OSError:
                        pass  # a temporary file renamed meanwhile (a snapshot being written)
            if not hits or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert hits == [], hits
    m = metrics(replica)
    assert m.get("strata_users_forgotten_total") == 1


def test_encrypted_primary_replicates_to_a_replica_with_the_same_master_key(make_server):
    """Encryption at rest on both sides: the replica fetches the primary's
    sealed keyring at start and again for keys made later (new users), serves
    the same data, holds no plaintext, and a forget reaches it."""
    import os
    import uuid
    key_hex = os.urandom(32).hex()
    enc = ["--master-key", key_hex]
    primary, key = start_primary(make_server, extra=enc)
    pc = primary.client()
    early, late = "u-" + uuid.uuid4().hex[:8], "u-" + uuid.uuid4().hex[:8]
    mk_early, mk_late = "zq" + uuid.uuid4().hex[:12], "zq" + uuid.uuid4().hex[:12]
    r = pc.post("/v1/users/%s/memories" % early, {"memory_type": "fact",
                                                 "content": "note %s" % mk_early},
                headers=hdr(key))
    assert r.status == 201
    replica = start_replica(make_server, primary, extra=enc)
    rc = replica.client()
    # a user whose key is made after the replica copied the keyring
    r = pc.post("/v1/users/%s/memories" % late, {"memory_type": "fact",
                                                "content": "note %s" % mk_late},
                headers=hdr(key))
    assert r.status == 201
    assert pc.add_turn("s-" + late, late, "hello %s" % mk_late, headers=hdr(key)).status == 201
    wait_caught_up(primary, replica)
    for uid, mk in ((early, mk_early), (late, mk_late)):
        a, b = same(pc, rc, "/v1/users/%s/memories/search" % uid, key, method="POST",
                    body={"query": "note", "mode": "keyword"})
        assert a == b and [x["content"] for x in b["results"]] == ["note %s" % mk]
    # a forget reaches the replica
    assert pc.delete("/user/%s/memory" % late, headers=hdr(key)).status == 200
    wait_caught_up(primary, replica)
    r = rc.post("/v1/users/%s/memories/search" % late, {"query": "note", "mode": "keyword"},
                headers=hdr(key))
    assert r.json()["results"] == []
    replica.stop()
    primary.stop()
    for srv in (primary, replica):
        for root, _, names in os.walk(srv.data_dir):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    data = f.read()
                assert mk_early.encode() not in data and mk_late.encode() not in data, n
