"""Backups, restore and scheduled snapshots against the real stratad and CLI.

  * `strata backup DIR` while writers keep posting turns and memories: the
    backup finishes without stopping them, restoring it gives a server that
    has every write acknowledged before the backup was asked for (memories
    are checked by LSN: a memory's id is its log position) and answers like
    the original for data the writers did not touch afterwards;
  * `strata restore --at T` between two batches: the later batch is absent,
    the earlier one is there;
  * a damaged backup (a flipped byte, a missing file) is refused by restore,
    naming the file, and nothing is restored;
  * bad requests: relative or non-empty directory, no or a tenant's key,
    unknown fields;
  * scheduled snapshots: archived every --snapshot-archive-every seconds,
    --snapshot-retain of them kept, reported in /metrics.
"""

import json
import os
import subprocess
import threading
import time

import strata_testlib as tl

ADMIN = "backup-admin-secret"


def admin_hdr():
    return {"Authorization": "Bearer " + ADMIN}


def start_authed(make_server, extra=None):
    srv = make_server(args=["--admin-key", ADMIN, "--buffer-turns", "1000",
                            "--consolidate-every", "0"] + (extra or []))
    c = srv.client()
    r = c.post("/v1/admin/tenants/acme/keys", headers=admin_hdr())
    assert r.status == 201, r
    key = r.json()["key"]
    c.close()
    return srv, key


def auth(key):
    return {"Authorization": "Bearer " + key}


def cli(srv, args, key=ADMIN, cwd=None):
    """The CLI against srv with the admin key (or none), optionally in cwd."""
    cmd = [tl.STRATA_CLI, "--url", srv.url] + list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    if key:
        env["STRATA_API_KEY"] = key
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def lsn_of(memory_id):
    return int(memory_id.split("-", 1)[1], 16)


def start_on(make_server, data_dir):
    return make_server(args=["--admin-key", ADMIN, "--buffer-turns", "1000",
                             "--consolidate-every", "0"], data_dir=data_dir)


class Writers:
    """Threads posting turns (one session each) and memories until stopped,
    recording what was acknowledged and when."""

    def __init__(self, srv, key, n_turn_threads=2):
        self.srv = srv
        self.key = key
        self.stop = threading.Event()
        self.turns = {}          # session -> [(content, ack time)]
        self.memories = []       # (id, content, ack time)
        self.errors = []
        self.threads = [threading.Thread(target=self._turns, args=("load-%d" % i,))
                        for i in range(n_turn_threads)]
        self.threads.append(threading.Thread(target=self._memories))

    def _turns(self, sid):
        c = self.srv.client()
        acked = self.turns.setdefault(sid, [])
        i = 0
        while not self.stop.is_set():
            content = "%s turn %d" % (sid, i)
            r = c.add_turn(sid, "u-load", content, headers=auth(self.key), retry=False)
            if r.status != 201:
                self.errors.append(r)
                return
            acked.append((content, time.monotonic()))
            i += 1
        c.close()

    def _memories(self):
        c = self.srv.client()
        i = 0
        while not self.stop.is_set():
            content = "load memory number %d about sailing" % i
            r = c.post("/v1/users/u-mem/memories",
                       {"memory_type": "fact", "content": content, "importance": 0.3},
                       headers=auth(self.key))
            if r.status != 201:
                self.errors.append(r)
                return
            self.memories.append((r.json()["id"], content, time.monotonic()))
            i += 1
        c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_backup_under_load_then_restore(make_server, tmp_path):
    srv, key = start_authed(make_server)
    c = srv.client()
    # Data nobody touches after the backup: the restored server must answer
    # for it exactly as the original does.
    for i in range(5):
        assert c.add_turn("static", "u-static", "static %d" % i, headers=auth(key)).status == 201
    assert c.put("/v1/graph/nodes/user:u-static", {"label": "User", "properties": {"x": 1}},
                 headers=auth(key)).status in (200, 201)
    assert c.put("/v1/graph/nodes/topic:sailing", {"label": "Topic", "properties": {}},
                 headers=auth(key)).status in (200, 201)
    assert c.put("/v1/graph/edges", {"from": "user:u-static", "to": "topic:sailing",
                                     "type": "INTERESTED_IN", "properties": {"weight": 0.7}},
                 headers=auth(key)).status in (200, 201)
    r = c.put("/v1/kv/l2/static-key", {"v": [1, 2, 3]}, headers=auth(key))
    assert r.status == 200, r

    with Writers(srv, key) as w:
        time.sleep(0.4)
        asked_at = time.monotonic()
        res = cli(srv, ["--json", "backup", "bk"], cwd=str(tmp_path))
        done_at = time.monotonic()
        time.sleep(0.2)       # writes go on after the backup
    assert not w.errors, w.errors[:3]
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    bk = str(tmp_path / "bk")
    assert info["dir"] == bk            # made absolute by the CLI
    assert os.path.isfile(os.path.join(bk, "MANIFEST.json"))
    manifest = json.load(open(os.path.join(bk, "MANIFEST.json")))
    assert manifest["lsn"] == info["lsn"] and manifest["bytes"] == info["bytes"]
    names = [f["name"] for f in manifest["files"]]
    assert any(n.startswith("log/") for n in names) and any(n.startswith("snap/l2-") for n in names)
    # The writers were not held up while the files were copied.
    during = [t for _, _, t in w.memories if asked_at < t < done_at]
    during += [t for acked in w.turns.values() for _, t in acked if asked_at < t < done_at]
    assert during, "no write was acknowledged while the backup ran"

    new_dir = str(tmp_path / "restored")
    res = tl.run_cli(["restore", bk, new_dir])
    assert res.returncode == 0, res.stderr
    assert "restored backup" in res.stdout
    rsrv = start_on(make_server, new_dir)
    rc = rsrv.client()
    # Every memory acknowledged before the backup's snapshot LSN is there.
    lsn = info["lsn"]
    covered = [(mid, content) for mid, content, t in w.memories if lsn_of(mid) <= lsn]
    assert covered
    for mid, content in covered:
        r = rc.get("/v1/users/u-mem/memories/%s" % mid, headers=auth(key))
        assert r.status == 200 and r.json()["content"] == content, (mid, r)
    # Every turn acknowledged before the backup was asked for is there, in order.
    for sid, acked in w.turns.items():
        before = [content for content, t in acked if t < asked_at]
        r = rc.get("/v1/sessions/%s" % sid, headers=auth(key))
        assert r.status == 200, r
        got = [t["content"] for t in r.json()["buffer"]]
        assert got[:len(before)] == before, sid
        assert got == [content for content, _ in acked][:len(got)]   # nothing invented
    # Untouched data answers exactly as on the original server.
    for path in ("/v1/sessions/static", "/v1/graph/nodes/user:u-static",
                 "/v1/graph/subgraph?center=user:u-static&depth=2", "/v1/kv/l2/static-key",
                 "/v1/users/u-static/profile"):
        a = c.get(path, headers=auth(key))
        b = rc.get(path, headers=auth(key))
        assert (a.status, a.json()) == (b.status, b.json()), path
    c.close()
    rc.close()


def _sleep_past_second():
    """Sleep until 0.15 s after the next whole second; return that second."""
    now = time.time()
    time.sleep(int(now) + 1.15 - now)
    return int(time.time())


def test_point_in_time_restore(make_server, tmp_path):
    srv, key = start_authed(make_server)
    c = srv.client()
    for i in range(4):
        assert c.add_turn("pitr", "u-p", "early %d" % i, headers=auth(key)).status == 201
    assert c.put("/v1/kv/l1/early", {"v": 1}, headers=auth(key)).status == 200
    assert c.put("/v1/graph/nodes/n-early", {"label": "Topic", "properties": {}},
                 headers=auth(key)).status in (200, 201)
    at = _sleep_past_second()        # every early write is before `at`
    _sleep_past_second()             # every late write is after at + 1 s
    for i in range(3):
        assert c.add_turn("pitr", "u-p", "late %d" % i, headers=auth(key)).status == 201
    assert c.put("/v1/kv/l1/late", {"v": 2}, headers=auth(key)).status == 200
    assert c.put("/v1/graph/nodes/n-late", {"label": "Topic", "properties": {}},
                 headers=auth(key)).status in (200, 201)
    bk = str(tmp_path / "bk")
    res = cli(srv, ["backup", bk])
    assert res.returncode == 0, res.stderr
    assert "backup of LSN" in res.stdout

    at_dir = str(tmp_path / "at")
    res = tl.run_cli(["restore", bk, "--to", at_dir, "--at", str(at)])
    assert res.returncode == 0, res.stderr
    all_dir = str(tmp_path / "all")
    assert tl.run_cli(["restore", bk, all_dir]).returncode == 0
    early = start_on(make_server, at_dir).client()
    full = start_on(make_server, all_dir).client()
    s = early.get("/v1/sessions/pitr", headers=auth(key)).json()
    assert [t["content"] for t in s["buffer"]] == ["early %d" % i for i in range(4)]
    assert early.get("/v1/kv/l1/early", headers=auth(key)).status == 200
    assert early.get("/v1/kv/l1/late", headers=auth(key)).status == 404
    assert early.get("/v1/graph/nodes/n-early", headers=auth(key)).status == 200
    assert early.get("/v1/graph/nodes/n-late", headers=auth(key)).status == 404
    # Without --at: everything, as on the original.
    a = c.get("/v1/sessions/pitr", headers=auth(key)).json()
    b = full.get("/v1/sessions/pitr", headers=auth(key)).json()
    assert a == b and b["state"]["turn_count"] == 7
    assert full.get("/v1/kv/l1/late", headers=auth(key)).status == 200
    for x in (c, early, full):
        x.close()


def test_damaged_backup_is_refused(make_server, tmp_path):
    srv, key = start_authed(make_server)
    c = srv.client()
    for i in range(20):
        assert c.add_turn("dmg", "u-d", "turn %d" % i, headers=auth(key)).status == 201
    bk = str(tmp_path / "bk")
    assert cli(srv, ["backup", bk]).returncode == 0
    manifest = json.load(open(os.path.join(bk, "MANIFEST.json")))
    seg = next(f["name"] for f in manifest["files"] if f["name"].startswith("log/"))
    path = os.path.join(bk, seg)
    with open(path, "r+b") as f:
        f.seek(60)
        b = f.read(1)
        f.seek(60)
        f.write(bytes([b[0] ^ 0x20]))
    target = str(tmp_path / "never")
    res = tl.run_cli(["restore", bk, target])
    assert res.returncode == 1
    assert seg in res.stderr and "corrupt" in res.stderr, res.stderr
    assert not os.path.exists(target) or not os.listdir(target)
    with open(path, "r+b") as f:       # repair, then lose a snapshot file
        f.seek(60)
        f.write(b)
    snap = next(f["name"] for f in manifest["files"] if f["name"].startswith("snap/"))
    os.rename(os.path.join(bk, snap), os.path.join(str(tmp_path), "moved"))
    res = tl.run_cli(["restore", bk, target])
    assert res.returncode == 1 and "missing" in res.stderr and snap in res.stderr, res.stderr
    os.rename(os.path.join(str(tmp_path), "moved"), os.path.join(bk, snap))
    os.unlink(os.path.join(bk, "MANIFEST.json"))   # an unfinished backup
    res = tl.run_cli(["restore", bk, target])
    assert res.returncode == 1 and "MANIFEST.json" in res.stderr, res.stderr
    res = tl.run_cli(["restore", bk])
    assert res.returncode == 2
    c.close()


def test_backup_bad_input(make_server, tmp_path):
    srv, key = start_authed(make_server)
    c = srv.client()
    d = str(tmp_path / "b1")
    r = c.post("/v1/admin/backup", {"dir": "relative/path"}, headers=admin_hdr())
    tl.assert_error(r, 400)
    r = c.post("/v1/admin/backup", {"dir": d, "extra": 1}, headers=admin_hdr())
    tl.assert_error(r, 400, "unknown_field")
    r = c.post("/v1/admin/backup", {"dir": 5}, headers=admin_hdr())
    tl.assert_error(r, 400)
    r = c.post("/v1/admin/backup", {}, headers=admin_hdr())
    tl.assert_error(r, 400, "missing_field")
    r = c.post("/v1/admin/backup", body="dir=/x", headers=admin_hdr(), content_type="text/plain")
    tl.assert_error(r, 415)
    r = c.post("/v1/admin/backup", {"dir": d})
    tl.assert_error(r, 401)
    r = c.post("/v1/admin/backup", {"dir": d}, headers=auth(key))
    tl.assert_error(r, 403)
    assert not os.path.exists(d)          # refused requests changed nothing
    os.makedirs(d)
    open(os.path.join(d, "keep"), "w").write("x")
    r = c.post("/v1/admin/backup", {"dir": d}, headers=admin_hdr())
    tl.assert_error(r, 409)
    assert os.listdir(d) == ["keep"]
    r = c.post("/v1/admin/backup", {"dir": str(tmp_path / "ok")}, headers=admin_hdr())
    assert r.status == 200, r
    body = r.json()
    assert body["dir"] == str(tmp_path / "ok") and body["lsn"] >= 1 and body["files"]
    res = cli(srv, ["backup", str(tmp_path / "b2")], key=None)
    assert res.returncode == 1 and "401" in res.stderr
    c.close()


def test_scheduled_snapshots_are_archived_and_pruned(make_server):
    srv = make_server(args=["--snapshot-archive-every", "1", "--snapshot-retain", "2"])
    c = srv.client()
    deadline = time.monotonic() + 4.5
    i = 0
    while time.monotonic() < deadline:
        assert c.add_turn("arch", "u-a", "turn %d" % i).status == 201
        i += 1
        time.sleep(0.1)
    samples = tl.parse_metrics(c.metrics().body.decode())
    assert tl.metric_sum(samples, "strata_snapshot_archives_total") >= 3
    assert tl.metric_sum(samples, "strata_snapshot_archived_sets") == 2
    assert tl.metric_sum(samples, "strata_snapshot_last_lsn") >= 1
    assert tl.metric_sum(samples, "strata_snapshot_last_timestamp_seconds") > 1e9
    c.close()
    srv.stop()        # no archiving in progress while the directory is read
    archive = os.path.join(srv.data_dir, "snap", "archive")
    files = os.listdir(archive)
    for tier in ("l1", "l2", "l3", "kv", "jobs", "profile", "keys"):
        sets = [f for f in files if f.startswith(tier + "-") and f.endswith(".snap")]
        assert len(sets) == 2, (tier, files)
    # each archived set is stamped with the log position it covers
    lsns = sorted({int(f.split("-")[1].split(".")[0]) for f in files if f.startswith("kv-")})
    assert lsns[0] < lsns[1] <= tl.metric_sum(samples, "strata_log_last_lsn")


def test_backup_on_the_default_no_auth_server(make_server, tmp_path):
    """The embedded default (no admin key, no API keys, loopback only): the
    operator's backup works without a key, as every other route does; managing
    tenants' keys still needs an admin key."""
    srv = make_server()
    c = srv.client()
    assert c.add_turn("s1", "u1", "I love jazz").status == 201
    c.close()
    dst = str(tmp_path / "bk")
    out = subprocess.run([tl.STRATA_CLI, "--url", srv.url, "backup", dst],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    restored = str(tmp_path / "restored")
    out = subprocess.run([tl.STRATA_CLI, "restore", dst, restored],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    again = make_server(data_dir=restored)
    c = again.client()
    assert c.get_session("s1").json()["buffer"][0]["content"] == "I love jazz"
    assert c.get("/v1/admin/tenants/acme/keys").status == 403
    c.close()
