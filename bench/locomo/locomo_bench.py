#!/usr/bin/env python3
"""LoCoMo evidence-recall benchmark for Strata's L2 retrieval.

Loads every conversation of the LoCoMo file into a running stratad as
memories (one per turn, its dia_id kept as provenance; one Strata user per
conversation, so retrieval stays within the question's own conversation),
asks every question in each search mode, and computes evidence recall@k as
shared/data/locomo/README.md defines it, overall and per category. In the same
run it computes a BM25-only baseline over the same turns in plain Python
(Okapi, k1=1.2, b=0.75, lower-cased alphanumeric tokens), so the ratio is
measured on one machine in one run.

usage: locomo_bench.py --url http://127.0.0.1:PORT --data PATH [--k 1,5,10,20]
"""

import argparse
import collections
import http.client
import json
import math
import re
import sys
import time
import urllib.parse

DIA_RE = re.compile(r"D(\d+):(\d+)")
TOKEN_RE = re.compile(r"[a-z0-9]+")


def clean_evidence(evidence, valid):
    out = set()
    for e in evidence:
        for s, t in DIA_RE.findall(str(e)):
            d = "D%d:%d" % (int(s), int(t))
            if d in valid:
                out.add(d)
    return out


def turns_of(conv):
    c = conv["conversation"]
    out = []
    n = 1
    while ("session_%d" % n) in c:
        for t in c["session_%d" % n]:
            text = "%s: %s" % (t["speaker"], t["text"])
            if t.get("blip_caption"):
                text += " [shares an image: %s]" % t["blip_caption"]
            out.append((t["dia_id"], text))
        n += 1
    return out


class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def post(self, path, body):
        self.conn.request("POST", path, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError("%s -> %d %s" % (path, r.status, data[:300]))
        return json.loads(data)


class BM25:
    def __init__(self, docs, k1=1.2, b=0.75):
        self.k1, self.b = k1, b
        self.docs = [collections.Counter(TOKEN_RE.findall(d.lower())) for _, d in docs]
        self.ids = [i for i, _ in docs]
        self.lens = [sum(c.values()) for c in self.docs]
        self.avg = sum(self.lens) / max(1, len(self.lens))
        self.df = collections.Counter()
        for c in self.docs:
            self.df.update(c.keys())
        self.n = len(self.docs)

    def search(self, q, k):
        terms = set(TOKEN_RE.findall(q.lower()))
        scores = []
        for i, c in enumerate(self.docs):
            s = 0.0
            for t in terms:
                tf = c.get(t)
                if not tf:
                    continue
                idf = math.log(1 + (self.n - self.df[t] + 0.5) / (self.df[t] + 0.5))
                s += idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * self.lens[i] / self.avg))
            if s > 0:
                scores.append((s, i))
        scores.sort(key=lambda x: (-x[0], x[1]))
        return [self.ids[i] for _, i in scores[:k]]


def recall_table(name, per_q, ks):
    """per_q: list of (category, gold set, ranked dia_ids)."""
    rows = {}
    cats = sorted(set(c for c, _, _ in per_q))
    for label, subset in [("all", per_q)] + [("cat%d" % c, [x for x in per_q if x[0] == c])
                                               for c in cats]:
        vals = []
        for k in ks:
            r = [len(g & set(ranked[:k])) / len(g) for _, g, ranked in subset]
            vals.append(sum(r) / len(r) if r else 0.0)
        rows[label] = (len(subset), vals)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", default="1,5,10,20")
    ap.add_argument("--modes", default="hybrid,vector,keyword")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    ks = [int(x) for x in args.k.split(",")]
    kmax = max(ks)
    data = json.load(open(args.data))
    cli = Client(args.url)
    results = {m: [] for m in args.modes.split(",")}
    results["bm25-baseline"] = []
    t_load = 0.0
    t_query = collections.Counter()
    n_queries = 0
    for conv in data:
        user = "locomo-" + conv["sample_id"] + "-%d" % int(time.time() * 1000)
        turns = turns_of(conv)
        valid = set(d for d, _ in turns)
        t0 = time.perf_counter()
        for dia, text in turns:
            cli.post("/v1/users/%s/memories" % user,
                     {"memory_type": "experience", "content": text[:16000],
                      "importance": 0.5, "provenance": [dia]})
        t_load += time.perf_counter() - t0
        bm = BM25(turns)
        for qa in conv["qa"]:
            gold = clean_evidence(qa.get("evidence", []), valid)
            if not gold:
                continue
            q = qa["question"]
            n_queries += 1
            for mode in args.modes.split(","):
                t0 = time.perf_counter()
                res = cli.post("/v1/users/%s/memories/search" % user,
                               {"query": q, "limit": kmax, "mode": mode})["results"]
                t_query[mode] += time.perf_counter() - t0
                ranked = []
                for m in res:
                    for p in m["provenance"]:
                        if p not in ranked:
                            ranked.append(p)
                results[mode].append((qa["category"], gold, ranked))
            results["bm25-baseline"].append((qa["category"], gold, bm.search(q, kmax)))
    print("LoCoMo evidence recall@k (%d conversations, %d questions with evidence)"
          % (len(data), n_queries))
    print("load: %.2f s for %d memories" % (t_load, sum(len(turns_of(c)) for c in data)))
    for mode, t in t_query.items():
        print("query %-8s: %.2f ms mean over HTTP" % (mode, 1000 * t / max(1, n_queries)))
    header = "%-16s %-6s %5s " % ("system", "subset", "n") + " ".join("R@%-5d" % k for k in ks)
    print(header)
    out = {}
    for name, per_q in results.items():
        table = recall_table(name, per_q, ks)
        out[name] = {k: {"n": v[0], "recall": dict(zip(ks, v[1]))} for k, v in table.items()}
        for label, (n, vals) in table.items():
            print("%-16s %-6s %5d " % (name, label, n) + " ".join("%.3f  " % v for v in vals))
    base = out["bm25-baseline"]["all"]["recall"]
    for mode in args.modes.split(","):
        mine = out[mode]["all"]["recall"]
        print("ratio %-8s / bm25: " % mode +
              " ".join("R@%d %.2f" % (k, mine[k] / base[k] if base[k] else 0) for k in ks))
    if args.json_out:
        json.dump(out, open(args.json_out, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
