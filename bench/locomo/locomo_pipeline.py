#!/usr/bin/env python3
"""LoCoMo evidence recall THROUGH the memory pipeline.

locomo_bench.py stores every LoCoMo turn as a memory. This script instead
talks to stratad as an agent would: every LoCoMo session becomes a Strata
session, every turn is posted to POST /v1/sessions/{id}/turns as role "user"
with content "<speaker>: <text>" (both speakers are users of the memory from
the agent's point of view), every session is ended, and the memories are
whatever consolidation (the configured extractor, PII masking, duplicate
checks) made of the turns. One Strata user per conversation,
"locomo-<sample_id>"; session ids "<sample_id>-s<n>" (--suffix X appends "-X"
to both, to reuse a server that already holds them).

A memory keeps its source turn as provenance "turn:<session_id>:<seq>"; this
script keeps its own map (session_id, seq) -> dia_id, seq being the
turn_count the append returned. Every question with evidence is then asked in
each search mode with limit 20; the ranked memories map to dia_ids
(de-duplicated in rank order), and evidence recall@k is computed as
shared/data/locomo/README.md defines it, with locomo_bench.py's own
functions, overall and per category.

Also reported, per conversation: the memories created, and the coverage: the
fraction of evidence turns that produced any memory, and the best recall any
ranking could reach with these memories (mean over questions of
|G & covered| / |G|), which explains the recall figures.

In the same run (unless --no-raw) locomo_bench.py is run against the same
server, so its raw-turn figures (one memory per turn) and its BM25 baseline
are printed beside the pipeline's.

usage: locomo_pipeline.py --url http://127.0.0.1:PORT --data PATH
                          [--k 1,5,10,20] [--modes hybrid,vector,keyword]
                          [--no-raw] [--suffix X] [--plain] [--json-out FILE]
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import locomo_bench as lb  # noqa: E402  (clean_evidence, turns_of, BM25, recall_table)


class Client(lb.Client):
    def get_text(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("%s -> %d %s" % (path, r.status, data[:300]))
        return data.decode()

    def post_status(self, path, body):
        self.conn.request("POST", path, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data


def metrics(cli):
    out = {}
    for line in cli.get_text("/metrics").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if "{" not in name:
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def wait_idle(cli, timeout=600):
    """Until no job is queued or running (twice in a row, 20 ms apart)."""
    deadline = time.time() + timeout
    calm = 0
    while time.time() < deadline:
        m = metrics(cli)
        if m.get("strata_jobs_queued", 1) == 0 and m.get("strata_jobs_running", 1) == 0:
            calm += 1
            if calm == 2:
                return m
        else:
            calm = 0
        time.sleep(0.02)
    raise RuntimeError("jobs did not finish within %d s" % timeout)


def sessions_of(conv):
    c = conv["conversation"]
    n = 1
    while ("session_%d" % n) in c:
        yield n, c["session_%d" % n]
        n += 1


def all_memories(cli, user):
    """Every memory of user: the union of a keyword search for "user" (the
    rules extractor writes every memory as "User ...") and a vector search
    with the largest limit, keyed by id."""
    found = {}
    for mode, query in (("keyword", "user"), ("vector", "user"), ("hybrid", "user")):
        res = cli.post("/v1/users/%s/memories/search" % user,
                       {"query": query, "limit": 1000, "mode": mode})["results"]
        for m in res:
            found[m["id"]] = m
    return found


def ranked_dias(results, prov_map):
    ranked = []
    for m in results:
        for p in m.get("provenance", []):
            dia = prov_map.get(p)
            if dia is not None and dia not in ranked:
                ranked.append(dia)
    return ranked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", default="1,5,10,20")
    ap.add_argument("--modes", default="hybrid,vector,keyword")
    ap.add_argument("--no-raw", action="store_true",
                    help="skip locomo_bench.py (raw turns as memories, BM25 baseline)")
    ap.add_argument("--suffix", default="",
                    help="appended to user and session ids, to reuse a server")
    ap.add_argument("--plain", action="store_true",
                    help="diagnostic: post the turn's text without the \"<speaker>: \" prefix")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    ks = [int(x) for x in args.k.split(",")]
    kmax = max(ks)
    modes = args.modes.split(",")
    data = json.load(open(args.data))
    cli = Client(args.url)
    sfx = "-" + args.suffix if args.suffix else ""

    results = {m: [] for m in modes}
    results["bm25-baseline"] = []
    upper = []                        # (category, gold, covered-ranking) for the ceiling
    per_conv = []
    t_post = t_wait = 0.0
    n_turns_total = 0
    m0 = metrics(cli)
    for conv in data:
        sid0 = conv["sample_id"]
        user = "locomo-%s%s" % (sid0, sfx)
        turns = lb.turns_of(conv)
        valid = set(d for d, _ in turns)
        prov_map = {}                 # "turn:<session>:<seq>" -> dia_id
        before = metrics(cli)
        t0 = time.perf_counter()
        n_turns = 0
        for n, session in sessions_of(conv):
            sid = "%s-s%d%s" % (sid0, n, sfx)
            for t in session:
                r = cli.post("/v1/sessions/%s/turns" % sid,
                             {"user_id": user, "role": "user",
                              "content": t["text"] if args.plain else
                              "%s: %s" % (t["speaker"], t["text"])})
                prov_map["turn:%s:%d" % (sid, r["turn_count"])] = t["dia_id"]
                n_turns += 1
            status, body = cli.post_status("/v1/sessions/%s/end" % sid, {})
            if status != 202:
                raise RuntimeError("end %s -> %d %s" % (sid, status, body[:200]))
        t1 = time.perf_counter()
        after = wait_idle(cli)
        t2 = time.perf_counter()
        t_post += t1 - t0
        t_wait += t2 - t1
        n_turns_total += n_turns

        mems = all_memories(cli, user)
        made = after["strata_pipeline_memories_consolidated_total"] - \
            before["strata_pipeline_memories_consolidated_total"]
        dups = after["strata_pipeline_duplicates_skipped_total"] - \
            before["strata_pipeline_duplicates_skipped_total"]
        covered = set()
        for m in mems.values():
            for p in m.get("provenance", []):
                if p in prov_map:
                    covered.add(prov_map[p])

        bm = lb.BM25(turns)
        gold_all = set()
        n_q = 0
        for qa in conv["qa"]:
            gold = lb.clean_evidence(qa.get("evidence", []), valid)
            if not gold:
                continue
            n_q += 1
            gold_all |= gold
            q = qa["question"]
            for mode in modes:
                res = cli.post("/v1/users/%s/memories/search" % user,
                               {"query": q, "limit": kmax, "mode": mode})["results"]
                results[mode].append((qa["category"], gold, ranked_dias(res, prov_map)))
            results["bm25-baseline"].append((qa["category"], gold, bm.search(q, kmax)))
            upper.append((qa["category"], gold, sorted(gold & covered)))
        ceiling = [len(g & set(r)) / len(g) for c, g, r in upper[-n_q:]] if n_q else []
        per_conv.append({
            "conversation": sid0, "sessions": sum(1 for _ in sessions_of(conv)),
            "turns": n_turns, "memories": len(mems), "memories_counter": int(made),
            "duplicates_skipped": int(dups), "turns_with_memory": len(covered),
            "evidence_turns": len(gold_all),
            "evidence_turns_with_memory": len(gold_all & covered),
            "questions": n_q,
            "ceiling": sum(ceiling) / len(ceiling) if ceiling else 0.0,
        })
    m1 = metrics(cli)

    # ---- raw-turn figures and BM25 baseline, same server, same run -------------
    raw = None
    if not args.no_raw:
        with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
            raw_json = f.name
        try:
            cmd = [sys.executable, os.path.join(HERE, "locomo_bench.py"), "--url", args.url,
                   "--data", args.data, "--k", args.k, "--modes", args.modes,
                   "--json-out", raw_json]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stdout)
                raise RuntimeError("locomo_bench.py failed")
            raw = json.load(open(raw_json))
            raw = {name: {sub: {"n": v["n"], "recall": {int(k): r for k, r in v["recall"].items()}}
                          for sub, v in t.items()} for name, t in raw.items()}
        finally:
            os.unlink(raw_json)

    # ---- report ----------------------------------------------------------------
    n_q = len(results["bm25-baseline"])
    print("LoCoMo evidence recall@k through the pipeline (%d conversations, %d turns, "
          "%d questions with evidence)" % (len(data), n_turns_total, n_q))
    print("posting turns + ending sessions: %.2f s (%.0f turns/s over HTTP); waiting for the "
          "jobs afterwards: %.2f s; jobs done %d, failed %d"
          % (t_post, n_turns_total / t_post if t_post else 0, t_wait,
             m1["strata_jobs_done_total"] - m0["strata_jobs_done_total"],
             m1["strata_jobs_failed_total"] - m0["strata_jobs_failed_total"]))
    print()
    print("Memories and coverage per conversation (coverage = evidence turns that produced "
          "any memory; ceiling = best recall any ranking of these memories can reach)")
    print("%-8s %8s %6s %9s %6s %11s %15s %9s %8s" % (
        "conv", "sessions", "turns", "memories", "dups", "turns->mem", "evidence cov.",
        "questions", "ceiling"))
    tot = collections.Counter()
    for c in per_conv:
        print("%-8s %8d %6d %9d %6d %11d %9d/%-4d %4.1f%% %6d %8.3f" % (
            c["conversation"], c["sessions"], c["turns"], c["memories"],
            c["duplicates_skipped"], c["turns_with_memory"], c["evidence_turns_with_memory"],
            c["evidence_turns"], 100.0 * c["evidence_turns_with_memory"] /
            max(1, c["evidence_turns"]), c["questions"], c["ceiling"]))
        for k in ("sessions", "turns", "memories", "duplicates_skipped", "turns_with_memory",
                  "evidence_turns_with_memory", "evidence_turns", "questions"):
            tot[k] += c[k]
        if c["memories"] != c["memories_counter"]:
            print("  note: %s: search found %d memories, the counter says %d"
                  % (c["conversation"], c["memories"], c["memories_counter"]))
    ceil_all = [len(g & set(r)) / len(g) for _, g, r in upper]
    print("%-8s %8d %6d %9d %6d %11d %9d/%-4d %4.1f%% %6d %8.3f" % (
        "all", tot["sessions"], tot["turns"], tot["memories"], tot["duplicates_skipped"],
        tot["turns_with_memory"], tot["evidence_turns_with_memory"], tot["evidence_turns"],
        100.0 * tot["evidence_turns_with_memory"] / max(1, tot["evidence_turns"]),
        tot["questions"], sum(ceil_all) / max(1, len(ceil_all))))
    print("memories per turn: %.3f" % (tot["memories"] / max(1, tot["turns"])))
    print()

    out = {"per_conversation": per_conv, "pipeline": {}, "raw": raw}
    tables = {}
    for name, per_q in results.items():
        t = lb.recall_table(name, per_q, ks)
        tables[name] = t
        out["pipeline"][name] = {k: {"n": v[0], "recall": dict(zip(ks, v[1]))}
                                 for k, v in t.items()}
    ceil_t = lb.recall_table("ceiling", upper, [10 ** 6])
    out["ceiling"] = {k: v[1][0] for k, v in ceil_t.items()}

    print("Evidence recall@k: pipeline memories vs raw turns as memories (locomo_bench.py), "
          "same server, same run; BM25 over raw turns")
    hdr = "%-8s %-6s %5s  " % ("mode", "subset", "n") + "  ".join(
        "R@%-2d pipe / raw " % k for k in ks) + "  ceiling"
    print(hdr)
    subsets = list(tables["bm25-baseline"].keys())
    for mode in modes + ["bm25-baseline"]:
        for sub in subsets:
            n, vals = tables[mode][sub]
            cells = []
            for i, k in enumerate(ks):
                rv = None
                if raw is not None and mode in raw and sub in raw[mode]:
                    rv = raw[mode][sub]["recall"][k]
                if mode == "bm25-baseline":
                    cells.append("  %5s   %.3f " % ("", vals[i]))
                else:
                    cells.append("%.3f / %s" % (vals[i], "%.3f" % rv if rv is not None
                                                else "  -  "))
            extra = "  %.3f" % out["ceiling"].get(sub, 0) if mode != "bm25-baseline" else ""
            name = "bm25" if mode == "bm25-baseline" else mode
            print("%-8s %-6s %5d  " % (name, sub, n) + "  ".join(cells) + extra)
    base = out["pipeline"]["bm25-baseline"]["all"]["recall"]
    print()
    for mode in modes:
        mine = out["pipeline"][mode]["all"]["recall"]
        line = "ratio %-8s pipeline / bm25: " % mode + " ".join(
            "R@%d %.2f" % (k, mine[k] / base[k] if base[k] else 0) for k in ks)
        if raw is not None and mode in raw:
            rr = raw[mode]["all"]["recall"]
            line += "   pipeline / raw: " + " ".join(
                "R@%d %.2f" % (k, mine[k] / rr[k] if rr[k] else 0) for k in ks)
        print(line)
    if args.json_out:
        json.dump(out, open(args.json_out, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
