#!/usr/bin/env python3
"""L2 restart benchmark: how long stratad takes to come back with 100k memories.

1. Starts stratad on a fresh temporary data directory and inserts N memories
   (POST /v1/users/{uid}/memories; short synthetic sentences from a small word
   list, fixed seed; several client threads, one keep-alive connection each;
   the built-in hashing embedder, pinned with --embedder hash: stratad's
   default, auto, picks MiniLM when models/ holds its weights).
2. Stops it with SIGTERM (graceful: it writes a snapshot per tier).
3. Restarts it on the same directory and times, from the process's start,
   the first /healthz answer and the first search that returns results.
   strata_embed_cache_misses_total read before that search tells whether
   recovery embedded anything (it must be 0).
4. Stops it, deletes snap/, and does 3 again: recovery from the log alone
   (every memory re-inserted into HNSW and BM25 from the vector stored in its
   log record, nothing re-embedded).
5. A crash: restarts it, inserts --tail more memories, SIGKILLs it and does 3
   again: the snapshot plus a log tail.
Restarts run with --embedder auto (the collection's own) unless
--restart-embedder says otherwise. Prints insert throughput, the restart
times (wall clock and stratad's CPU), what each recovery replayed, the
embeddings each computed, and the data directory's size. See README.md.

usage: bench/l2/restart_bench.py [--memories 100000] [--threads 4] [--users 100]
                                 [--tail 10000] [--stratad PATH] [--fsync everysec]
                                 [--embedder hash] [--restart-embedder auto] [--keep]
Without --stratad (or $STRATAD) it uses build-bench/stratad, configuring and
building it (Release) when missing or older than the sources.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

# ---- synthetic memories ---------------------------------------------------------

SUBJECTS = ["The user", "Alice", "Bob", "My sister", "Our manager", "The client", "Dana",
            "My neighbour", "The team lead", "Sam"]
VERBS = ["likes", "prefers", "avoids", "booked", "bought", "recommended", "mentioned",
         "planned", "cancelled", "reviewed", "enjoys", "dislikes"]
ADJS = ["spicy", "quiet", "cheap", "organic", "vintage", "early", "late", "vegan", "blue",
        "italian", "wooden", "electric", "sunny", "crowded", "small", "famous"]
NOUNS = ["coffee", "restaurant", "flight", "hotel", "bicycle", "concert", "museum", "laptop",
         "garden", "train", "novel", "sneakers", "podcast", "bakery", "jacket", "meeting",
         "yoga class", "camera", "dentist", "pizza"]
PLACES = ["in Paris", "near the office", "downtown", "in Berlin", "at the airport", "online",
          "in Lisbon", "by the river", "at home", "in Kyoto", "on the coast", "in Madrid"]
WHENS = ["on Monday", "last week", "every morning", "in March", "at weekends", "tonight",
         "next month", "twice a year", "after work", "in summer"]
TYPES = ["preference", "fact", "experience"]


def sentence(rng):
    return "%s %s the %s %s %s %s." % (rng.choice(SUBJECTS), rng.choice(VERBS),
                                       rng.choice(ADJS), rng.choice(NOUNS),
                                       rng.choice(PLACES), rng.choice(WHENS))


def make_memories(n, n_users, seed=1234):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = {"memory_type": TYPES[rng.randrange(3)], "content": sentence(rng),
                "importance": round(rng.random(), 3)}
        out.append(("/v1/users/u%d/memories" % (i % n_users), json.dumps(body).encode()))
    return out


# ---- stratad ----------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def find_stratad(arg):
    if arg:
        return arg
    if os.environ.get("STRATAD"):
        return os.environ["STRATAD"]
    build = os.path.join(ROOT, "build-bench")
    exe = os.path.join(build, "stratad")
    stale = not os.access(exe, os.X_OK)
    if not stale:
        t = os.path.getmtime(exe)
        for top in ("src", "include"):
            for d, _, files in os.walk(os.path.join(ROOT, top)):
                if any(os.path.getmtime(os.path.join(d, f)) > t for f in files):
                    stale = True
                    break
            if stale:
                break
    if stale:
        print("== building stratad (Release) in %s" % build, file=sys.stderr)
        gen = ["-G", "Ninja"] if shutil.which("ninja") and not os.path.exists(
            os.path.join(build, "CMakeCache.txt")) else []
        subprocess.run(["cmake", "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build, "--target", "stratad"], check=True,
                       stdout=subprocess.DEVNULL)
    return exe


class Server:
    """One stratad process; start() returns once /healthz answers."""

    def __init__(self, exe, data_dir, fsync, embedder, log_path):
        self.exe, self.data_dir, self.fsync, self.log_path = exe, data_dir, fsync, log_path
        self.embedder = embedder
        self.proc = None
        self.port = None

    def start(self, timeout=600):
        self.port = free_port()
        env = dict(os.environ)
        env.pop("STRATA_CONFIG", None)
        args = [self.exe, "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", self.data_dir, "--fsync", self.fsync, "--embedder", self.embedder,
                "--snapshot-every", "0", "--log-level", "info"]
        self.log = open(self.log_path, "a")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        while True:
            if self.proc.poll() is not None:
                sys.exit("stratad exited (%d); see %s" % (self.proc.returncode, self.log_path))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return time.monotonic() - t0, t0
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                sys.exit("stratad not ready after %d s" % timeout)
            time.sleep(0.005)

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def metric(self, name):
        c = self.conn()
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None

    def rss_mib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def cpu_s(self):
        """The process's CPU time so far (user + system, every thread)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """SIGTERM and wait; returns the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            sys.exit("stratad did not stop within 300 s after SIGTERM")
        self.log.close()
        if self.proc.returncode != 0:
            sys.exit("stratad exited with %d on SIGTERM; see %s" % (self.proc.returncode,
                                                                    self.log_path))
        return time.monotonic() - t0

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def search(srv, user, query, limit=5):
    c = srv.conn()
    c.request("POST", "/v1/users/%s/memories/search" % user,
              body=json.dumps({"query": query, "limit": limit}).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        sys.exit("search failed: HTTP %d %s" % (r.status, body[:200]))
    return [m["id"] for m in json.loads(body)["results"]]


# ---- phases ---------------------------------------------------------------------------

def insert_all(srv, memories, n_threads):
    errors = []
    lock = threading.Lock()
    next_ix = [0]

    def worker():
        c = srv.conn()
        headers = {"Content-Type": "application/json"}
        while True:
            with lock:
                i = next_ix[0]
                next_ix[0] += 1
            if i >= len(memories) or errors:
                break
            path, body = memories[i]
            c.request("POST", path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            if r.status != 201:
                errors.append("HTTP %d: %s" % (r.status, data[:200]))
                break
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    last = t0
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.5)
        if time.monotonic() - last > 15:
            last = time.monotonic()
            done = min(next_ix[0], len(memories))
            print("   %d / %d inserted, %.0f/s" % (done, len(memories), done / (last - t0)),
                  file=sys.stderr)
    secs = time.monotonic() - t0
    if errors:
        sys.exit("insert failed: " + errors[0])
    return secs


def replay_line(log_path):
    """The last "opened ...: replayed N records after snapshot LSN S" line."""
    last = None
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"replayed (\d+) records after snapshot LSN (\d+), last LSN (\d+)", line)
            if m:
                last = tuple(int(x) for x in m.groups())
    return last


def auto_line(log_path):
    """What the last start's --embedder auto chose ("embedder auto: using X")."""
    last = None
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"embedder auto: using (\S+)", line)
            if m:
                last = m.group(1)
    return last


def restart(exe, data_dir, fsync, embedder, log_path, n, probe_user, probe_query):
    srv = Server(exe, data_dir, fsync, embedder, log_path)
    try:
        t_health, t0 = srv.start()
        cpu = srv.cpu_s()
        misses = srv.metric("strata_embed_cache_misses_total")
        ids = search(srv, probe_user, probe_query)
        t_search = time.monotonic() - t0
        if not ids:
            sys.exit("search after restart returned nothing")
        count = srv.metric("strata_l2_memories")
        if count != n:
            sys.exit("after restart stratad holds %s memories, expected %d" % (count, n))
        rss = srv.rss_mib()
    finally:
        t_stop = srv.stop()
    replayed = replay_line(log_path)
    used = auto_line(log_path)
    return {"auto": used, "cpu": cpu, "health": t_health, "search": t_search, "misses": misses, "ids": ids,
            "rss": rss, "stop": t_stop, "replayed": replayed}


def du_mib(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total / (1024.0 * 1024.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memories", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=4, help="client threads (keep-alive each)")
    ap.add_argument("--users", type=int, default=100, help="memories spread over this many users")
    ap.add_argument("--stratad", default=None)
    ap.add_argument("--fsync", default="everysec", help="stratad --fsync (always|everysec|no)")
    ap.add_argument("--embedder", default="hash",
                    help="stratad --embedder while inserting (minilm embeds ~150 short "
                         "sentences/s on this machine: bench/embed)")
    ap.add_argument("--restart-embedder", default="auto",
                    help="stratad --embedder for the restarts (auto, the default: the "
                         "collection's own)")
    ap.add_argument("--tail", type=int, default=10000,
                    help="memories inserted after the last snapshot before a SIGKILL (0: skip)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    exe = find_stratad(a.stratad)
    tmp = tempfile.mkdtemp(prefix="strata-bench-l2-restart.")
    data = os.path.join(tmp, "data")
    log_path = os.path.join(tmp, "stratad.log")
    srv = None
    try:
        memories = make_memories(a.memories, a.users)
        probe_user = "u7"
        probe_query = "italian restaurant in Paris"

        # 1. insert
        print("== stratad %s --data-dir %s --fsync %s --embedder %s --snapshot-every 0"
              % (exe, data, a.fsync, a.embedder), file=sys.stderr)
        srv = Server(exe, data, a.fsync, a.embedder, log_path)
        srv.start()
        print("== inserting %d memories over %d users, %d client threads"
              % (a.memories, a.users, a.threads), file=sys.stderr)
        cpu0 = srv.cpu_s()
        ins_secs = insert_all(srv, memories, a.threads)
        ins_cpu = srv.cpu_s() - cpu0
        count = srv.metric("strata_l2_memories")
        if count != a.memories:
            sys.exit("stratad holds %s memories, expected %d" % (count, a.memories))
        misses_ins = srv.metric("strata_embed_cache_misses_total")
        rss_ins = srv.rss_mib()
        ids_before = search(srv, probe_user, probe_query)

        # 2. graceful stop (snapshots)
        print("== SIGTERM (graceful stop, writes snapshots)", file=sys.stderr)
        stop_secs = srv.stop()
        srv = None
        snap_dir = os.path.join(data, "snap")
        size_total = du_mib(data)
        size_snap = du_mib(snap_dir)
        snap_files = ["%s %.1f MiB" % (f, os.path.getsize(os.path.join(snap_dir, f)) / 1048576.0)
                      for f in sorted(os.listdir(snap_dir))] if os.path.isdir(snap_dir) else []

        # 3. restart from the snapshot
        print("== restart from snapshot + log tail", file=sys.stderr)
        r_snap = restart(exe, data, a.fsync, a.restart_embedder, log_path, a.memories, probe_user, probe_query)

        # 4. restart from the log only
        print("== rm -r snap/; restart from the log only", file=sys.stderr)
        shutil.rmtree(snap_dir)
        r_log = restart(exe, data, a.fsync, a.restart_embedder, log_path, a.memories,
                        probe_user, probe_query)

        # 5. a crash: snapshot (written by the stop above) + a log tail
        r_crash = None
        if a.tail > 0:
            print("== restart, insert %d more, SIGKILL; restart from snapshot + %d log records"
                  % (a.tail, a.tail), file=sys.stderr)
            srv = Server(exe, data, a.fsync, a.restart_embedder, log_path)
            srv.start()
            insert_all(srv, make_memories(a.tail, a.users, seed=99), a.threads)
            srv.kill()
            srv.log.close()
            srv = None
            r_crash = restart(exe, data, a.fsync, a.restart_embedder, log_path,
                              a.memories + a.tail, probe_user, probe_query)
    finally:
        if srv is not None:
            srv.kill()
        if a.keep:
            print("kept %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    runs = [("from snapshot", r_snap), ("from log only", r_log)]
    if r_crash is not None:
        runs.append(("after SIGKILL", r_crash))
    chose = sorted({r["auto"] for _, r in runs if r["auto"]})
    embedder_note = " (auto chose: %s)" % ", ".join(chose) if chose else ""

    def rep(r):
        if r["replayed"] is None:
            return "?"
        n, snap_lsn, last = r["replayed"]
        return "%d records after snapshot LSN %d" % (n, snap_lsn)

    print()
    print("L2 restart: %d memories (%d users), embedder %s, HNSW M=16 ef_construction=200, "
          "fsync %s, %d cores" % (a.memories, a.users,
                                  "hash (384-d)" if a.embedder == "hash" else a.embedder,
                                  a.fsync, os.cpu_count()))
    print("restarts with --embedder %s%s" % (a.restart_embedder, embedder_note))
    print("%-50s %12s" % ("measure", "value"))
    print("%-50s %12.0f" % ("insert throughput (memories/s, %d threads)" % a.threads,
                            a.memories / ins_secs))
    print("%-50s %12.1f" % ("insert wall time (s)", ins_secs))
    print("%-50s %12.0f" % ("stratad CPU per insert (us)", ins_cpu / a.memories * 1e6))
    print("%-50s %12.0f" % ("embeddings computed while inserting", misses_ins))
    print("%-50s %12.0f" % ("RSS after insert (MiB)", rss_ins))
    print("%-50s %12.2f" % ("graceful stop, SIGTERM to exit (s)", stop_secs))
    print("%-50s %12.1f" % ("data dir after stop (MiB)", size_total))
    print("%-50s %12.1f" % ("  of which snap/ (MiB)", size_snap))
    print("%-50s %12.1f" % ("  of which log (MiB)", size_total - size_snap))
    for name, r in runs:
        print("%-50s %12.2f" % ("restart %s: /healthz answers (s)" % name, r["health"]))
        print("%-50s %12.2f" % ("restart %s: first search answered (s)" % name, r["search"]))
        print("%-50s %12.2f" % ("restart %s: stratad CPU until ready (s)" % name, r["cpu"]))
        print("%-50s %12.0f" % ("restart %s: embeddings computed" % name, r["misses"]))
        print("%-50s %12.0f" % ("restart %s: RSS (MiB)" % name, r["rss"]))
        print("  %s replayed %s" % (name, rep(r)))
    print("snapshots written by the graceful stop: %s" % ", ".join(snap_files))
    same = ids_before == r_snap["ids"] == r_log["ids"]
    print("same top-5 for the probe search before and after both restarts: %s"
          % ("yes" if same else "no (%s / %s / %s)" % (ids_before, r_snap["ids"], r_log["ids"])))
    ok = all(r["misses"] == 0 for _, r in runs)
    print("requirement \"a restart with 100k memories re-embeds nothing and is ready in seconds\":")
    print("  re-embeds nothing: %s (embeddings computed before the first search: %s)"
          % ("met" if ok else "NOT met", ", ".join("%d" % r["misses"] for _, r in runs)))
    print("  ready (first search answered): %s"
          % "; ".join("%s %.2f s" % (name, r["search"]) for name, r in runs))


if __name__ == "__main__":
    main()
