"""L1 session routes: turns, session read, state, end, jobs, dirty flags, idle
expiry, concurrency and persistence across restarts."""

import threading
import time

import pytest

import strata_testlib as tl

ROLES = ("user", "assistant", "system")
JOB_STATUSES = ("queued", "running", "done", "failed")


def add_turns(c, sid, uid, contents, roles=None):
    out = []
    for i, content in enumerate(contents):
        role = roles[i % len(roles)] if roles else "user"
        r = c.add_turn(sid, uid, content, role=role)
        assert r.status == 201, r
        out.append(r.json())
    return out


def wait_job(c, job_id, until=("done", "failed"), timeout=15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = c.get_job(job_id)
        assert r.status == 200, r
        last = r.json()
        if last["status"] in until:
            return last
        time.sleep(0.05)
    raise AssertionError("job %s still %r after %.0fs" % (job_id, last, timeout))


def settle_jobs(c, job_ids, timeout=10.0):
    """Wait (without failing) for jobs to finish, so later reads are stable."""
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        while time.monotonic() < deadline:
            r = c.get_job(job_id)
            if r.status != 200 or r.json().get("status") in ("done", "failed"):
                break
            time.sleep(0.05)


# ---- POST turns ----------------------------------------------------------------
def test_first_turn(client, sid, uid):
    r = client.add_turn(sid, uid, "hello")
    assert r.status == 201, r
    assert r.header("Content-Type", "").startswith("application/json")
    body = r.json()
    assert body["session_id"] == sid
    assert body["turn_count"] == 1
    assert body["consolidation"] == "none"
    assert not body.get("job_id")


def test_session_read_shape(client, sid, uid):
    t0 = int(time.time())
    add_turns(client, sid, uid, ["q1", "a1", "note"], roles=ROLES)
    t1 = int(time.time())
    r = client.get_session(sid)
    assert r.status == 200
    s = r.json()
    assert set(s) >= {"session_id", "user_id", "state", "buffer"}, s
    assert s["session_id"] == sid
    assert s["user_id"] == uid
    st = s["state"]
    assert set(st) >= {"current_stage", "turn_count", "last_active"}, st
    assert st["turn_count"] == 3
    assert isinstance(st["current_stage"], (str, type(None)))
    assert isinstance(st["last_active"], int) and not isinstance(st["last_active"], bool)
    assert t0 - 2 <= st["last_active"] <= t1 + 2
    assert [(t["role"], t["content"]) for t in s["buffer"]] == [
        ("user", "q1"), ("assistant", "a1"), ("system", "note")]
    for t in s["buffer"]:
        assert set(t) >= {"role", "content", "ts"}
        assert isinstance(t["ts"], int) and t0 - 2 <= t["ts"] <= t1 + 2
    ts = [t["ts"] for t in s["buffer"]]
    assert ts == sorted(ts)


def test_turn_count_increments(client, sid, uid):
    answers = add_turns(client, sid, uid, ["m%d" % i for i in range(1, 8)])
    assert [a["turn_count"] for a in answers] == list(range(1, 8))
    assert client.get_session(sid).json()["state"]["turn_count"] == 7


def test_default_buffer_is_20(client, sid, uid):
    add_turns(client, sid, uid, ["m%d" % i for i in range(25)])
    s = client.get_session(sid).json()
    assert s["state"]["turn_count"] == 25
    assert [t["content"] for t in s["buffer"]] == ["m%d" % i for i in range(5, 25)]


def test_buffer_trimmed_to_buffer_turns(make_server, sid, uid):
    # (stratad requires consolidate_every <= buffer_turns)
    srv = make_server(args=["--buffer-turns", "5", "--consolidate-every", "5"])
    c = srv.client()
    add_turns(c, sid, uid, ["m%d" % i for i in range(12)])
    s = c.get_session(sid).json()
    assert s["state"]["turn_count"] == 12
    assert [t["content"] for t in s["buffer"]] == ["m7", "m8", "m9", "m10", "m11"]


@pytest.mark.parametrize("content", [
    "plain ascii",
    "unicode: héllo wörld — 你好 — مرحبا — 🎉🧠",
    'quotes " and \\ backslashes \\n literal',
    "multi\nline\r\ntext\twith tabs",
    "control \u0001\u001f chars",
    "x" * 60000,
    " ",
], ids=["ascii", "unicode", "escapes", "newlines", "control", "60k", "space"])
def test_content_roundtrip(client, sid, uid, content):
    r = client.add_turn(sid, uid, content)
    assert r.status == 201, r
    got = client.get_session(sid).json()["buffer"][-1]
    assert got["content"] == content


@pytest.mark.parametrize("role", ROLES)
def test_roles(client, sid, uid, role):
    assert client.add_turn(sid, uid, "c", role=role).status == 201
    assert client.get_session(sid).json()["buffer"][-1]["role"] == role


@pytest.mark.parametrize("ident", [
    "a", "A-Z_a.z:0@9", "user@example.com", "tenant:session.42", "x" * 128,
], ids=["one-char", "all-classes", "email", "colon-dot", "128-bytes"])
def test_valid_ids(client, ident):
    r = client.add_turn(ident, ident, "hi")
    assert r.status == 201, r
    s = client.get_session(ident)
    assert s.status == 200
    assert s.json()["session_id"] == ident
    assert s.json()["user_id"] == ident


def test_other_users_session_409(client, sid, uid):
    add_turns(client, sid, uid, ["mine"])
    before = tl.session_snapshot(client, sid)
    r = client.add_turn(sid, uid + "-intruder", "not yours")
    tl.assert_error(r, 409)
    assert tl.session_snapshot(client, sid) == before
    # The owner can still write.
    assert client.add_turn(sid, uid, "still mine").json()["turn_count"] == 2


def test_sessions_are_independent(client, uid):
    a, b = tl.unique_id(), tl.unique_id()
    add_turns(client, a, uid, ["a1", "a2"])
    add_turns(client, b, uid, ["b1"])
    assert [t["content"] for t in client.get_session(a).json()["buffer"]] == ["a1", "a2"]
    assert [t["content"] for t in client.get_session(b).json()["buffer"]] == ["b1"]


# ---- consolidation and jobs ----------------------------------------------------------
def test_consolidation_every_10(client, sid, uid):
    answers = add_turns(client, sid, uid, ["t%d" % i for i in range(1, 26)])
    for n, a in enumerate(answers, start=1):
        if n in (10, 20):
            assert a["consolidation"] == "queued", (n, a)
            assert isinstance(a.get("job_id"), str) and a["job_id"], a
        else:
            assert a["consolidation"] == "none", (n, a)
    ids = [answers[9]["job_id"], answers[19]["job_id"]]
    assert ids[0] != ids[1]
    for job_id in ids:
        r = client.get_job(job_id)
        assert r.status == 200
        j = r.json()
        assert j["job_id"] == job_id
        assert isinstance(j["kind"], str) and j["kind"]
        assert j["status"] in JOB_STATUSES


def test_consolidation_jobs_finish(client, sid, uid):
    answers = add_turns(client, sid, uid, ["I prefer concise answers %d" % i for i in range(10)])
    job = wait_job(client, answers[-1]["job_id"])
    assert job["status"] == "done", job


def test_consolidate_every_flag(make_server, sid, uid):
    srv = make_server(args=["--consolidate-every", "3"])
    c = srv.client()
    answers = add_turns(c, sid, uid, ["t%d" % i for i in range(1, 8)])
    assert [a["consolidation"] for a in answers] == [
        "none", "none", "queued", "none", "none", "queued", "none"]


def test_consolidate_every_zero_is_off(make_server, sid, uid):
    srv = make_server(args=["--consolidate-every", "0"])
    c = srv.client()
    answers = add_turns(c, sid, uid, ["t%d" % i for i in range(25)])
    assert all(a["consolidation"] == "none" for a in answers)


# ---- PATCH state -----------------------------------------------------------------
def test_patch_state(client, sid, uid):
    add_turns(client, sid, uid, ["one", "two"])
    before = client.get_session(sid).json()
    r = client.set_stage(sid, "checkout")
    assert r.status == 200, r
    st = r.json()
    assert set(st) >= {"current_stage", "turn_count", "last_active"}, st
    assert st["current_stage"] == "checkout"
    assert st["turn_count"] == 2
    assert st["last_active"] >= before["state"]["last_active"]
    after = client.get_session(sid).json()
    assert after["state"]["current_stage"] == "checkout"
    assert after["buffer"] == before["buffer"]
    # And again: last write wins; unicode allowed.
    assert client.set_stage(sid, "étape 2 ✓").json()["current_stage"] == "étape 2 ✓"
    assert client.get_session(sid).json()["state"]["current_stage"] == "étape 2 ✓"


def test_patch_state_unknown_session_404(client):
    sid = tl.unique_id()
    tl.assert_error(client.set_stage(sid, "x"), 404)
    tl.assert_error(client.get_session(sid), 404)   # and it was not created


def test_get_unknown_session_404(client):
    tl.assert_error(client.get_session(tl.unique_id()), 404)


# ---- end ----------------------------------------------------------------------------
def test_end_session(client, sid, uid):
    add_turns(client, sid, uid, ["a", "b", "c"])
    r = client.end_session(sid)
    assert r.status == 202, r
    job_id = r.json()["job_id"]
    assert isinstance(job_id, str) and job_id
    j = client.get_job(job_id)
    assert j.status == 200
    j = j.json()
    assert j["job_id"] == job_id and j["status"] in JOB_STATUSES and j["kind"]
    assert wait_job(client, job_id)["status"] == "done"


def test_end_with_body_is_fine(client, sid, uid):
    add_turns(client, sid, uid, ["a"])
    r = client.post("/v1/sessions/%s/end" % sid, {})
    assert r.status == 202, r


def test_end_unknown_session_404(client):
    tl.assert_error(client.end_session(tl.unique_id()), 404)


def test_turn_after_end_continues(client, sid, uid):
    add_turns(client, sid, uid, ["a"])
    assert client.end_session(sid).status == 202
    r = client.add_turn(sid, uid, "b")
    assert r.status == 201
    assert r.json()["turn_count"] >= 1


# ---- dirty ---------------------------------------------------------------------------
def test_dirty_unknown_user(client):
    uid = tl.unique_id("nobody")
    r = client.dirty(uid)
    assert r.status == 200
    assert r.json()["user_id"] == uid and r.json()["attributes"] == []


def test_dirty_shape(client, sid, uid):
    add_turns(client, sid, uid, ["I am now a team lead", "I prefer short answers"])
    client.end_session(sid)
    r = client.dirty(uid)
    assert r.status == 200
    d = r.json()
    assert d["user_id"] == uid
    assert isinstance(d["attributes"], list)
    assert all(isinstance(a, str) for a in d["attributes"])
    assert d["attributes"] == sorted(set(d["attributes"]))


# ---- idle expiry -------------------------------------------------------------------
@pytest.mark.slow
def test_idle_expiry_and_ttl_zero(make_server, uid):
    ttl2 = make_server(args=["--session-ttl", "2"])
    ttl0 = make_server(args=["--session-ttl", "0"])
    c2, c0 = ttl2.client(), ttl0.client()
    idle, busy, forever = tl.unique_id("idle"), tl.unique_id("busy"), tl.unique_id("forever")
    add_turns(c2, idle, uid, ["x"])
    add_turns(c2, busy, uid, ["y"])
    add_turns(c0, forever, uid, ["z"])
    t_forever = time.monotonic()
    m_before = tl.parse_metrics(c2.metrics().body.decode())
    sessions_before = tl.metric_sum(m_before, "strata_l1_sessions")
    assert sessions_before >= 2
    deadline = time.monotonic() + 10
    gone = False
    while time.monotonic() < deadline:
        assert c2.add_turn(busy, uid, "keep-alive").status == 201
        r = c2.get_session(idle)
        if r.status == 404:
            tl.assert_error(r, 404)
            gone = True
            break
        time.sleep(0.4)
    assert gone, "session idle for > ttl was not expired within 10 s"
    assert c2.get_session(busy).status == 200, "an active session expired"
    # Expiry happened no earlier than the TTL allows (first turn was > 2 s ago).
    m_after = tl.parse_metrics(c2.metrics().body.decode())
    sessions_after = tl.metric_sum(m_after, "strata_l1_sessions")
    assert sessions_after == sessions_before - 1
    # Expiry queues a consolidation job. Only /metrics can show it; the job
    # families are not in the contract, so this part runs only if they exist.
    job_families = ("strata_jobs_queued", "strata_jobs_running", "strata_jobs_done_total",
                    "strata_jobs_failed_total")
    if all(any(n == f for n, _, _ in m_after) for f in job_families):
        def jobs_seen(m):
            return sum(tl.metric_sum(m, f) for f in job_families)
        assert jobs_seen(m_after) >= jobs_seen(m_before) + 1, "expiry queued no job"
    # --session-ttl 0: never expires (the other server has been idle for > 2 s).
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t_forever)))
    assert c0.get_session(forever).status == 200


def test_session_not_expired_early(make_server, uid, sid):
    srv = make_server(args=["--session-ttl", "3"])
    c = srv.client()
    add_turns(c, sid, uid, ["x"])
    time.sleep(1.0)
    assert c.get_session(sid).status == 200


# ---- concurrency ---------------------------------------------------------------------
def test_50_concurrent_clients_own_sessions(server):
    n_threads, n_turns = 50, 20
    errors = []
    sids = [tl.unique_id("conc%02d" % i) for i in range(n_threads)]
    barrier = threading.Barrier(n_threads)

    def worker(i):
        try:
            with server.client() as c:
                barrier.wait(timeout=30)
                for k in range(n_turns):
                    r = c.add_turn(sids[i], "cuser%02d" % i, "s%d-t%d" % (i, k),
                                   role=ROLES[k % 3])
                    if r.status != 201 or r.json()["turn_count"] != k + 1:
                        errors.append((i, k, r.status, r.body[:200]))
                        return
        except Exception as e:   # noqa: BLE001 - report any failure
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "workers hung"
    assert not errors, errors[:5]
    with server.client() as c:
        for i, s in enumerate(sids):
            body = c.get_session(s).json()
            assert body["user_id"] == "cuser%02d" % i
            assert body["state"]["turn_count"] == n_turns
            assert [t["content"] for t in body["buffer"]] == [
                "s%d-t%d" % (i, k) for k in range(n_turns)]


def test_concurrent_writers_same_session(server):
    n_threads, n_turns = 10, 30
    sid, uid = tl.unique_id("shared"), tl.unique_id("u")
    counts = [[] for _ in range(n_threads)]
    errors = []

    def worker(i):
        try:
            with server.client() as c:
                for k in range(n_turns):
                    r = c.add_turn(sid, uid, "w%d-%d" % (i, k))
                    if r.status != 201:
                        errors.append((i, k, r))
                        return
                    counts[i].append(r.json()["turn_count"])
        except Exception as e:   # noqa: BLE001
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:5]
    all_counts = sorted(x for cs in counts for x in cs)
    assert all_counts == list(range(1, n_threads * n_turns + 1)), "turn_count not unique/dense"
    for cs in counts:
        assert cs == sorted(cs)
    with server.client() as c:
        body = c.get_session(sid).json()
    assert body["state"]["turn_count"] == n_threads * n_turns
    buf = [t["content"] for t in body["buffer"]]
    assert len(buf) == 20
    for i in range(n_threads):   # each writer's turns keep their order
        mine = [int(x.split("-")[1]) for x in buf if x.startswith("w%d-" % i)]
        assert mine == sorted(mine)


def test_racing_owners_exactly_one_wins(server):
    """Two users create the same new session at once: one 201, one 409, and
    the session belongs to the winner."""
    for round_ in range(30):
        sid = tl.unique_id("race")
        results = {}
        barrier = threading.Barrier(2)

        def go(user):
            with server.client() as c:
                c.get("/healthz")            # connect before the barrier
                barrier.wait(timeout=10)
                results[user] = c.add_turn(sid, user, "from " + user)

        threads = [threading.Thread(target=go, args=(u,)) for u in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(r.status for r in results.values())
        assert statuses == [201, 409], (round_, {u: r.status for u, r in results.items()})
        winner = next(u for u, r in results.items() if r.status == 201)
        with server.client() as c:
            body = c.get_session(sid).json()
        assert body["user_id"] == winner
        assert [t["content"] for t in body["buffer"]] == ["from " + winner]


# ---- persistence ---------------------------------------------------------------------
def _populate(c, tag):
    """Write turns, a stage, kv values and an ended session; return what to expect."""
    uid = tl.unique_id("pu")
    sids = [tl.unique_id("ps%d" % i) for i in range(3)]
    jobs = []
    for i, s in enumerate(sids):
        answers = add_turns(c, s, uid, ["%s-%d-%d" % (tag, i, k) for k in range(5 + 4 * i)],
                            roles=ROLES)
        jobs += [a["job_id"] for a in answers if a.get("job_id")]
    assert c.set_stage(sids[0], "stage-" + tag).status == 200
    end = c.end_session(sids[2])
    assert end.status == 202
    settle_jobs(c, jobs + [end.json()["job_id"]])
    kv = {}
    for tier in ("l1", "l2", "l3"):
        key = "k-%s-%s" % (tag, tier)
        val = {"tag": tag, "tier": tier, "list": [1, 2.5, None, True], "s": "é✓"}
        assert c.kv_put(tier, key, val).status == 200
        kv[(tier, key)] = val
    sessions = {s: c.get_session(s).json() for s in sids}
    return {"uid": uid, "sessions": sessions, "kv": kv, "job": end.json()["job_id"],
            "dirty": c.dirty(uid).json()}


def _verify(c, exp):
    for s, body in exp["sessions"].items():
        r = c.get_session(s)
        assert r.status == 200, "session %s lost: %r" % (s, r)
        got = r.json()
        assert got["user_id"] == body["user_id"]
        assert got["state"]["turn_count"] == body["state"]["turn_count"]
        assert got["state"]["current_stage"] == body["state"]["current_stage"]
        assert got["state"]["last_active"] == body["state"]["last_active"]
        assert got["buffer"] == body["buffer"]
    for (tier, key), val in exp["kv"].items():
        r = c.kv_get(tier, key)
        assert r.status == 200, (tier, key, r)
        assert r.json() == val
    assert c.get_job(exp["job"]).status == 200, "job lost across restart"
    assert c.dirty(exp["uid"]).json() == exp["dirty"]


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_graceful_restart_keeps_everything(make_server, fsync):
    srv = make_server(args=["--fsync", fsync])
    c = srv.client()
    exp = _populate(c, "g")
    c.close()
    rc = srv.restart(graceful=True)
    assert rc == 0, "SIGTERM exit code %r" % rc
    c = srv.client()
    _verify(c, exp)
    # Writing continues where it stopped, and ownership survived.
    s0 = next(iter(exp["sessions"]))
    n = exp["sessions"][s0]["state"]["turn_count"]
    assert c.add_turn(s0, exp["uid"], "after restart").json()["turn_count"] == n + 1
    tl.assert_error(c.add_turn(s0, "someone-else", "x"), 409)


def test_sigkill_fsync_always_keeps_everything(make_server):
    srv = make_server(args=["--fsync", "always"])
    c = srv.client()
    exp = _populate(c, "k")
    c.close()
    srv.restart(graceful=False)
    c = srv.client()
    _verify(c, exp)


def test_many_restarts_accumulate(make_server):
    srv = make_server(args=["--fsync", "always"])
    exps = []
    for round_ in range(4):
        c = srv.client()
        for e in exps:
            _verify(c, e)
        exps.append(_populate(c, "r%d" % round_))
        c.close()
        srv.restart(graceful=(round_ % 2 == 0))
    c = srv.client()
    for e in exps:
        _verify(c, e)


def test_expired_session_stays_gone_after_restart(make_server, uid, sid):
    srv = make_server(args=["--session-ttl", "1", "--fsync", "always"])
    c = srv.client()
    add_turns(c, sid, uid, ["x"])
    deadline = time.monotonic() + 8
    while c.get_session(sid).status != 404:
        assert time.monotonic() < deadline, "not expired"
        time.sleep(0.2)
    c.close()
    # Restart with expiry off: if the expiry was not made durable, the replay
    # would bring the session back for good.
    srv.args = ["--session-ttl", "0", "--fsync", "always"]
    srv.restart(graceful=False)
    c = srv.client()
    assert c.get_session(sid).status == 404
    time.sleep(0.5)
    assert c.get_session(sid).status == 404
