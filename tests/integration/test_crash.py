"""THE CRASH TEST: acknowledged turns survive kill -9 under --fsync always.

Each round, on one data directory kept across rounds:
  1. start stratad --fsync always --buffer-turns 1000 (consolidation stays on,
     so consolidation jobs are created and replayed too);
  2. 2-4 writer threads, each with its own new session, append turns and
     record every turn acknowledged with 201 (content and turn_count), plus the
     one turn in flight when the server died (it may or may not have landed);
     one more thread writes kv values and records the acknowledged ones;
  3. after a random 0.05-0.5 s, SIGKILL;
  4. restart and check, for every session of every round so far:
     - turn_count equals the acknowledged turns, or one more if the in-flight
       turn landed (never fewer: that would be a lost acknowledged write);
     - the buffer holds exactly the acknowledged contents in order, plus at
       most the in-flight one at the end; no duplicates, nothing invented;
     - every acknowledged kv value reads back.

Reproduce a run with STRATA_CRASH_SEED=<seed> (printed on failure) and change
the number of rounds with STRATA_CRASH_ROUNDS.
"""

import glob
import http.client
import os
import random
import shutil
import threading
import time

import pytest

import strata_testlib as tl

ROUNDS = int(os.environ.get("STRATA_CRASH_ROUNDS", "20"))
MAX_TURNS_PER_SESSION = 900        # stays under --buffer-turns 1000: nothing trimmed
TIME_BUDGET_S = 170.0              # the whole test must stay under 3 minutes
SERVER_ERRORS = (OSError, http.client.HTTPException)


class SessionLog:
    def __init__(self, sid, uid):
        self.sid = sid
        self.uid = uid
        self.acked = []          # contents acknowledged, in order
        self.counts = []         # turn_count of each acknowledged turn
        self.inflight = None     # content sent without an answer when the server died
        self.unexpected = []     # non-201 answers (a server bug, reported)


def writer(srv, log, stop):
    c = tl.Client(srv.host, srv.port, timeout=10)
    try:
        i = 0
        while not stop.is_set() and len(log.acked) < MAX_TURNS_PER_SESSION:
            content = "%s#%d" % (log.sid, i)
            log.inflight = content
            try:
                r = c.add_turn(log.sid, log.uid, content, role=("user", "assistant")[i % 2],
                               retry=False)
            except SERVER_ERRORS:
                return           # the server died: `inflight` may or may not be durable
            if r.status != 201:
                log.unexpected.append((content, r.status, r.body[:200]))
                log.inflight = None
                return
            log.acked.append(content)
            log.counts.append(r.json()["turn_count"])
            log.inflight = None
            i += 1
    finally:
        c.close()


def kv_writer(srv, acked, inflight, tag, stop):
    c = tl.Client(srv.host, srv.port, timeout=10)
    try:
        i = 0
        while not stop.is_set() and i < 2000:
            key = "crash-%s-%d" % (tag, i)
            val = {"tag": tag, "i": i, "pad": "v" * (i % 50)}
            inflight[:] = [(key, val)]
            try:
                r = c.kv_put("l2", key, val)
            except SERVER_ERRORS:
                return
            if r.status == 200:
                acked[key] = val
            inflight[:] = []
            i += 1
    finally:
        c.close()


def verify(c, logs, kv_acked, round_no, seed):
    where = "round %d (STRATA_CRASH_SEED=%d)" % (round_no, seed)
    for log in logs:
        r = c.get_session(log.sid)
        if not log.acked:
            # Nothing acknowledged: the session may exist (the in-flight turn) or not.
            assert r.status in (200, 404), (where, log.sid, r)
            if r.status == 200:
                got = [t["content"] for t in r.json()["buffer"]]
                allowed = [log.inflight] if log.inflight else []
                assert got == allowed, (where, log.sid, got)
            continue
        assert r.status == 200, "%s: session %s with %d acknowledged turns is gone: %r" % (
            where, log.sid, len(log.acked), r)
        body = r.json()
        assert body["user_id"] == log.uid, where
        got = [t["content"] for t in body["buffer"]]
        n_acked = len(log.acked)
        tc = body["state"]["turn_count"]
        assert tc >= n_acked, "%s: %s lost acknowledged turns: turn_count %d < %d acked" % (
            where, log.sid, tc, n_acked)
        # Acknowledged turn_counts were 1..n in order.
        assert log.counts == list(range(1, n_acked + 1)), (where, log.sid, log.counts[:10])
        if got[:n_acked] != log.acked:
            first = next((i for i, (a, b) in enumerate(zip(got, log.acked)) if a != b),
                         min(len(got), n_acked))
            raise AssertionError(
                "%s: %s buffer differs from acknowledged turns at index %d: got %r, "
                "expected %r (buffer %d, acked %d)" % (
                    where, log.sid, first, got[first:first + 3], log.acked[first:first + 3],
                    len(got), n_acked))
        extra = got[n_acked:]
        assert extra in ([], [log.inflight] if log.inflight else []), (
            "%s: %s has turns that were never sent or duplicated: %r" % (where, log.sid,
                                                                         extra[:3]))
        assert tc == len(got), "%s: %s turn_count %d but %d turns in buffer" % (
            where, log.sid, tc, len(got))
    for key, val in kv_acked.items():
        r = c.kv_get("l2", key)
        assert r.status == 200 and r.json() == val, "%s: acknowledged kv %s lost: %r" % (
            where, key, r)


def test_crash_kill9_keeps_acknowledged_turns(make_server):
    seed = int(os.environ.get("STRATA_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
    rng = random.Random(seed)
    t_start = time.monotonic()
    srv = make_server(args=["--fsync", "always", "--buffer-turns", "1000",
                            "--session-ttl", "0"], start=False)
    all_logs = []
    kv_acked = {}
    kv_last = {}
    total_acked = 0
    rounds_done = 0
    for round_no in range(ROUNDS):
        if time.monotonic() - t_start > TIME_BUDGET_S:
            break
        srv.start()
        c = srv.client()
        # Everything from earlier rounds is still there after this restart
        # (all sessions; the last round's kv keys plus a sample of older ones).
        sample = dict(rng.sample(sorted(kv_acked.items(), key=lambda kv: kv[0]),
                                 min(50, len(kv_acked))))
        sample.update(kv_last)
        verify(c, all_logs, sample, round_no, seed)
        c.close()

        n_writers = rng.randint(2, 4)
        logs = [SessionLog(tl.unique_id("crash%d-%d" % (round_no, i)),
                           "crash-user-%d" % (i % 3)) for i in range(n_writers)]
        all_logs.extend(logs)
        stop = threading.Event()
        kv_inflight = []
        kv_round = {}
        threads = [threading.Thread(target=writer, args=(srv, log, stop)) for log in logs]
        threads.append(threading.Thread(target=kv_writer,
                                        args=(srv, kv_round, kv_inflight, "r%d" % round_no,
                                              stop)))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.5))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "writer hung after kill"
        for log in logs:
            assert not log.unexpected, "round %d: unexpected answers %r" % (
                round_no, log.unexpected[:3])
        kv_acked.update(kv_round)
        kv_last = kv_round
        total_acked += sum(len(log.acked) for log in logs)
        rounds_done += 1

    srv.start()
    verify(srv.client(), all_logs, kv_acked, rounds_done, seed)
    rc = srv.stop()
    assert rc == 0, "SIGTERM after crash rounds: exit %r" % rc
    print("crash test: seed %d, %d rounds, %d sessions, %d acknowledged turns, %d kv, %.1fs"
          % (seed, rounds_done, len(all_logs), total_acked, len(kv_acked),
             time.monotonic() - t_start))
    assert rounds_done >= 20 or ROUNDS < 20, "only %d rounds fit in the time budget" % rounds_done
    assert total_acked > 0, "no turn was ever acknowledged"


# ---- recovery from damaged log files ------------------------------------------------
# These go below the HTTP contract: they use the data directory layout of
# src/log/log.h (log/<first lsn>.seg, 32-byte segment header, records after).

SEG_HEADER = 32


def segments(data_dir):
    return sorted(glob.glob(os.path.join(str(data_dir), "log", "*.seg")))


def _write_known(srv, sid, uid, n):
    c = srv.client()
    contents = ["%s#%d" % (sid, i) for i in range(n)]
    for i, content in enumerate(contents):
        r = c.add_turn(sid, uid, content)
        assert r.status == 201 and r.json()["turn_count"] == i + 1, r
    c.close()
    return contents


def _check_prefix(c, sid, contents, where):
    r = c.get_session(sid)
    if r.status == 404:
        return 0
    assert r.status == 200, (where, r)
    body = r.json()
    got = [t["content"] for t in body["buffer"]]
    assert got == contents[:len(got)], "%s: buffer is not a prefix of what was written: %r" % (
        where, got[:5])
    assert body["state"]["turn_count"] == len(got), (where, body["state"], len(got))
    return len(got)


def test_torn_tail_at_many_offsets(make_server, tmp_path):
    """Cut the last segment at many offsets: stratad starts every time and
    holds exactly a prefix of the turns (the torn record dropped)."""
    args = ["--fsync", "always", "--buffer-turns", "1000", "--snapshot-every", "0",
            "--session-ttl", "0", "--consolidate-every", "0"]
    srv = make_server(args=args)
    sid, uid = "torn-session", "torn-user"
    contents = _write_known(srv, sid, uid, 40)
    srv.kill()                       # no shutdown snapshot: state is in the log only
    pristine = tmp_path / "pristine"
    shutil.copytree(srv.data_dir, pristine)
    seg = segments(pristine)[-1]
    size = os.path.getsize(seg)
    rel = os.path.relpath(seg, pristine)
    rng = random.Random(7)
    offsets = sorted({SEG_HEADER, SEG_HEADER + 1, size - 1, size - 4, size - 31}
                     | {rng.randrange(SEG_HEADER, size) for _ in range(20)})
    seen = []
    for off in offsets:
        work = tmp_path / ("cut%d" % off)
        shutil.copytree(pristine, work)
        with open(work / rel, "r+b") as f:
            f.truncate(off)
        s2 = make_server(args=args, data_dir=work)
        with s2.client() as c:
            seen.append(_check_prefix(c, sid, contents, "cut at %d/%d" % (off, size)))
            # It keeps working after recovery: new turns land after the prefix.
            n = seen[-1]
            r = c.add_turn(sid, uid, "after-cut")
            assert r.status == 201 and r.json()["turn_count"] == n + 1, r
        assert s2.stop() == 0
        # ... and survive one more restart (no LSN reuse after the truncation).
        s2.start()
        with s2.client() as c:
            got = [t["content"] for t in c.get_session(sid).json()["buffer"]]
            assert got == contents[:n] + ["after-cut"], ("cut at %d" % off, got[-3:])
        s2.stop()
        shutil.rmtree(work, ignore_errors=True)
    assert seen == sorted(seen), "a longer file gave fewer turns: %s" % seen
    assert seen[-1] >= 39, "cutting the last byte lost more than the last record: %s" % seen


def test_garbage_appended_to_log_is_dropped(make_server):
    args = ["--fsync", "always", "--buffer-turns", "1000", "--snapshot-every", "0"]
    srv = make_server(args=args)
    sid, uid = "garbage-session", "garbage-user"
    contents = _write_known(srv, sid, uid, 25)
    srv.kill()
    with open(segments(srv.data_dir)[-1], "ab") as f:
        f.write(os.urandom(1000))
    srv.start()
    with srv.client() as c:
        assert _check_prefix(c, sid, contents, "garbage tail") == 25
        assert c.add_turn(sid, uid, "more").json()["turn_count"] == 26
    srv.restart(graceful=False)
    with srv.client() as c:
        assert [t["content"] for t in c.get_session(sid).json()["buffer"]] == contents + ["more"]


def test_corrupt_earlier_segment_refuses_to_start(make_server):
    """Corruption before the tail is never skipped silently: stratad refuses to
    start (non-zero exit and a message, not a crash)."""
    args = ["--fsync", "always", "--segment-max-bytes", "4096", "--snapshot-every", "0"]
    srv = make_server(args=args)
    _write_known(srv, "corrupt-session", "corrupt-user", 200)
    srv.kill()
    segs = segments(srv.data_dir)
    assert len(segs) >= 3, "expected several segments with --segment-max-bytes 4096: %s" % segs
    with open(segs[0], "r+b") as f:
        f.seek(SEG_HEADER + 40)
        b = f.read(1)
        f.seek(SEG_HEADER + 40)
        f.write(bytes([b[0] ^ 0xFF]))
    srv.start(wait=False)
    try:
        rc = srv.proc.wait(timeout=15)
    except Exception:
        srv.kill()
        raise AssertionError("stratad started on a log corrupt in the middle")
    srv.exit_codes.append(rc)
    assert rc > 0, "exit %s (a signal means a crash)" % rc
    assert "corrupt" in srv.log_text().lower() or "crc" in srv.log_text().lower(), srv.log_text()


def test_snapshot_ahead_of_log_tail(make_server):
    """Under --fsync no a power cut can lose log writes that a snapshot already
    holds. Emulate it (graceful stop writes a snapshot, then cut the log back):
    stratad must start with the snapshot's state and new writes must not reuse
    LSNs the snapshot covers (else they vanish at the next restart)."""
    args = ["--fsync", "no", "--buffer-turns", "1000", "--session-ttl", "0"]
    srv = make_server(args=args)
    sid, uid = "snap-session", "snap-user"
    contents = _write_known(srv, sid, uid, 30)
    assert srv.stop() == 0
    snaps = glob.glob(os.path.join(srv.data_dir, "snap", "*"))
    if not snaps:
        pytest.skip("no snapshot written at shutdown")
    seg = segments(srv.data_dir)[-1]
    with open(seg, "r+b") as f:
        f.truncate(SEG_HEADER)       # the whole log tail is "lost"
    srv.start()
    with srv.client() as c:
        n = _check_prefix(c, sid, contents, "snapshot, log cut")
        assert n == 30, "snapshot state lost: %d turns" % n
        for i in range(5):
            r = c.add_turn(sid, uid, "new-%d" % i)
            assert r.status == 201 and r.json()["turn_count"] == 31 + i, r
    srv.restart(graceful=False)      # replay: snapshot + the new records
    with srv.client() as c:
        got = [t["content"] for t in c.get_session(sid).json()["buffer"]]
        assert got == contents + ["new-%d" % i for i in range(5)], got[-7:]


def test_fsync_always_acks_are_durable(make_server):
    """With --fsync always, by the time a turn is acknowledged the log's durable
    LSN has reached it (strata_log_durable_lsn / strata_log_last_lsn)."""
    srv = make_server(args=["--fsync", "always", "--consolidate-every", "0"])
    c = srv.client()
    sid = tl.unique_id()
    for i in range(20):
        assert c.add_turn(sid, "dur-user", "t%d" % i).status == 201
        m = tl.parse_metrics(c.metrics().body.decode())
        names = {n for n, _, _ in m}
        if not {"strata_log_durable_lsn", "strata_log_last_lsn"} <= names:
            pytest.skip("log LSN metrics not exported")
        durable = tl.metric_sum(m, "strata_log_durable_lsn")
        last = tl.metric_sum(m, "strata_log_last_lsn")
        assert durable >= last, "acked with durable LSN %d < last LSN %d" % (durable, last)
    fs = tl.metric_sum(tl.parse_metrics(c.metrics().body.decode()), "strata_log_fsyncs_total")
    assert fs >= 20, "only %d fsyncs for 20 acknowledged turns under fsync=always" % fs
