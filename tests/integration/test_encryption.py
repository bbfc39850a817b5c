"""Encryption at rest (brief §3.2): with a master key every log record and
snapshot is AES-256-GCM sealed under a per-user (or per-tenant) data key.
Proven by scanning every file for marker strings, by restarting without or
with a wrong key, by tampering with a segment and a snapshot, by rotating the
master key, and by crypto-shredding: a copy of the data directory taken
before a user was forgotten can no longer be read for that user, while
everyone else's data comes back from it."""

import os
import shutil
import subprocess
import time
import uuid

import strata_testlib as tl
from test_forget import files_with, marker
from test_pipeline import CLI, distill, memories, run_session


def new_key():
    return os.urandom(32).hex()


def write_everything(c, uid, m):
    run_session(c, tl.unique_id("s"), uid, [("user", "I love %s." % m[0]),
                                            ("user", "I work at %s." % m[1])])
    distill(c, uid)
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact",
                                              "content": "note %s" % m[2], "importance": 0.5})
    assert r.status == 201, r.body
    assert c.put("/v1/graph/nodes/product:%s" % m[3],
                 {"label": "Product", "properties": {"x": m[3]}}).status in (200, 201)
    assert c.put("/v1/kv/l2/k-%s" % m[4], {"v": m[4]}).status == 200
    sid = tl.unique_id("s")
    assert c.add_turn(sid, uid, "open session %s" % m[5]).status == 201
    return sid


def start_fails(make_server, data_dir, env, needle):
    srv = make_server(data_dir=data_dir, env=env, start=False)
    srv.start(wait=False)
    deadline = time.time() + 20
    while srv.proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert srv.proc.poll() is not None and srv.proc.returncode != 0, "should refuse to start"
    srv.exit_codes.append(srv.proc.returncode)  # an expected exit, not a crash
    assert needle in srv.log_text(), srv.log_tail()


def test_no_plaintext_on_disk_and_restart(make_server):
    key = new_key()
    srv = make_server(env={"STRATA_MASTER_KEY": key})
    c = srv.client()
    uid = tl.unique_id("u")
    m = [marker() for _ in range(6)]
    sid = write_everything(c, uid, m)
    srv.restart()  # snapshots written at shutdown, sealed
    c = srv.client()
    assert c.add_turn(sid, uid, "after restart %s" % m[0]).status == 201
    c.close()
    srv.stop()
    assert os.path.exists(os.path.join(srv.data_dir, "keyring"))
    assert any(n.endswith(".snap") for n in os.listdir(os.path.join(srv.data_dir, "snap")))
    assert files_with(srv.data_dir, m + [uid]) == []
    assert "encryption at rest on" in srv.log_text()

    srv.start()
    c = srv.client()
    r = c.get_session(sid)
    assert r.status == 200 and r.json()["buffer"][-1]["content"] == "after restart %s" % m[0]
    assert any(m[2] in x["content"] for x in memories(c, uid, query="note"))
    assert c.get("/v1/graph/nodes/product:%s" % m[3]).json()["properties"]["x"] == m[3]
    assert c.get("/v1/kv/l2/k-%s" % m[4]).json() == {"v": m[4]}
    c.close()
    srv.stop()

    # without the key, or with another one: a clear refusal, never a crash
    start_fails(make_server, srv.data_dir, {}, "encrypted")
    start_fails(make_server, srv.data_dir, {"STRATA_MASTER_KEY": new_key()}, "master key")
    start_fails(make_server, srv.data_dir, {"STRATA_MASTER_KEY": "abc"}, "64 hex digits")


def test_master_key_from_file_and_rotation(make_server, tmp_path):
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    k1.write_text(new_key() + "\n")
    k2.write_bytes(os.urandom(32))
    srv = make_server(args=["--master-key-file", str(k1)])
    c = srv.client()
    uid = tl.unique_id("u")
    mk = marker()
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact", "content": mk,
                                              "importance": 0.5})
    assert r.status == 201
    c.close()
    srv.stop()
    out = subprocess.run([CLI, "keyring", "rotate", "--data-dir", srv.data_dir,
                          "--master-key-file", str(k1), "--new-master-key-file", str(k2)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "rotated" in out.stdout
    start_fails(make_server, srv.data_dir, {"STRATA_MASTER_KEY_FILE": str(k1)}, "master key")
    again = make_server(data_dir=srv.data_dir, args=["--master-key-file", str(k2)])
    c = again.client()
    assert [x["content"] for x in memories(c, uid, query=mk)] == [mk]
    c.close()
    # a bad new key file is refused and changes nothing
    bad = tmp_path / "bad"
    bad.write_text("nope")
    again.stop()
    out = subprocess.run([CLI, "keyring", "rotate", "--data-dir", srv.data_dir,
                          "--master-key-file", str(k2), "--new-master-key-file", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    again.start()


def flip(path, offset_from_end):
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(size - offset_from_end)
        b = f.read(1)
        f.seek(size - offset_from_end)
        f.write(bytes([b[0] ^ 0x20]))


def test_tampering_is_detected(make_server):
    key = new_key()
    srv = make_server(env={"STRATA_MASTER_KEY": key}, args=["--segment-max-bytes", "4096"])
    c = srv.client()
    uid = tl.unique_id("u")
    for i in range(60):
        assert c.add_turn(tl.unique_id("s"), uid, "turn number %d %s" % (i, "x" * 80)).status == 201
    c.close()
    srv.stop()
    snaps = sorted(os.listdir(os.path.join(srv.data_dir, "snap")))
    segs = sorted(os.listdir(os.path.join(srv.data_dir, "log")))
    assert len(segs) >= 3, segs

    # a flipped byte in a snapshot: reported, the snapshot is not used, the
    # log rebuilds the same state
    copy = srv.data_dir + "-snap"
    shutil.copytree(srv.data_dir, copy)
    l2 = [n for n in snaps if n.startswith("l1-")][-1]
    flip(os.path.join(copy, "snap", l2), 40)
    s2 = make_server(data_dir=copy, env={"STRATA_MASTER_KEY": key})
    assert "l1" in s2.log_text() and ("corrupt" in s2.log_text() or "CRC" in s2.log_text()
                                      or "checksum" in s2.log_text()), s2.log_tail()
    c = s2.client()
    r = c.post("/v1/sessions/x/turns", {"user_id": uid, "role": "user", "content": "hi"})
    assert r.status == 201
    c.close()
    s2.stop()

    # a flipped byte inside an older log segment: refused, naming the file
    copy = srv.data_dir + "-seg"
    shutil.copytree(srv.data_dir, copy)
    flip(os.path.join(copy, "log", segs[0]), 30)
    start_fails(make_server, copy, {"STRATA_MASTER_KEY": key}, segs[0])


def test_forgotten_user_cannot_be_read_from_an_old_copy(make_server, tmp_path):
    key = new_key()
    env = {"STRATA_MASTER_KEY": key}
    srv = make_server(env=env, args=["--fsync", "always"])
    c = srv.client()
    gone, stays = tl.unique_id("u"), tl.unique_id("u")
    mg, ms = marker(), marker()
    for uid, mk in ((gone, mg), (stays, ms)):
        r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact",
                                                  "content": "fact %s" % mk, "importance": 0.5})
        assert r.status == 201
        assert c.add_turn(tl.unique_id("s"), uid, "turn %s" % mk).status == 201
    c.close()
    srv.restart()  # the old copy gets snapshots too
    srv.stop()
    backup = str(tmp_path / "old-copy")
    shutil.copytree(srv.data_dir, backup)
    os.remove(os.path.join(backup, "keyring"))  # a backup never holds the keys
    srv.start()
    c = srv.client()
    r = c.delete("/user/%s/memory" % gone)
    assert r.status == 200 and r.json()["deleted"]["l2"] == 1, r.body
    c.close()
    srv.stop()
    # the old copy, opened with today's keyring: the forgotten user's records
    # cannot be decrypted any more; the other user's are all there
    shutil.copy(os.path.join(srv.data_dir, "keyring"), os.path.join(backup, "keyring"))
    old = make_server(data_dir=backup, env=env)
    assert "shredded" in old.log_text(), old.log_tail()
    c = old.client()
    assert memories(c, gone, query="fact") == []
    assert [x["content"] for x in memories(c, stays, query="fact")] == ["fact %s" % ms]
    c.close()


def test_reembed_an_encrypted_collection(make_server, tmp_path):
    """strata reembed opens sealed memory records with the source's keyring,
    re-embeds them and seals them again: the copy holds no plaintext."""
    key = new_key()
    srv = make_server(args=["--embed-dim", "64"], env={"STRATA_MASTER_KEY": key})
    c = srv.client()
    uid = tl.unique_id("u")
    mk = marker()
    r = c.post("/v1/users/%s/memories" % uid, {"memory_type": "fact",
                                              "content": "User is allergic to %s" % mk})
    assert r.status == 201
    mid = r.json()["id"]
    c.close()
    srv.stop()
    dst = str(tmp_path / "reembedded")
    env = dict(os.environ, STRATA_MASTER_KEY=key)
    out = subprocess.run([CLI, "reembed", "--data-dir", srv.data_dir, "--embedder", "hash",
                          "--embed-dim", "128", dst], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert files_with(dst, [mk, uid]) == []
    again = make_server(data_dir=dst, args=["--embed-dim", "128"],
                        env={"STRATA_MASTER_KEY": key})
    c = again.client()
    assert c.get("/v1/users/%s/memories/%s" % (uid, mid)).json()["content"].endswith(mk)
    c.close()
