#!/usr/bin/env python3
"""Summary of bench/embed/run.sh's rounds: for each input length, the best
and the median over rounds of each column, for ours and for onnxruntime,
and ours / onnxruntime, both best against best and the median of the
per-round ratios (each round runs the two back to back, so a round's ratio
saw the same machine load).

    summary.py OUT_DIR     reads OUT_DIR/c.N.txt and OUT_DIR/ort.N.txt

Standard library only: works without the reference runtime (then the
onnxruntime columns are absent).
"""
import glob
import os
import re
import statistics
import sys

COLS = ("1-thread s/s", "1-thread s/cpu-s", "all-cores s/s")


def parse(path):
    """{tokens: (1-thread, per-cpu, all-cores)}, latency ms, header line."""
    rows, lat, head = {}, None, ""
    with open(path) as f:
        for i, line in enumerate(f):
            if i == 0:
                head = line.strip()
            m = re.match(r"^(\d+)\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
            if m:
                rows[int(m.group(1))] = tuple(float(m.group(i)) for i in (2, 3, 4))
            m = re.match(r"^latency.*: ([\d.]+) ms", line)
            if m:
                lat = float(m.group(1))
    return rows, lat, head


def rounds(out, prefix):
    files = sorted(glob.glob(os.path.join(out, prefix + ".*.txt")),
                   key=lambda p: int(p.rsplit(".", 2)[1]))
    return [parse(p) for p in files]


def main(out):
    ours, ort = rounds(out, "c"), rounds(out, "ort")
    if not ours:
        sys.exit("summary: no rounds in %s" % out)
    print("%d round(s); best / median over rounds; ratio = ours / onnxruntime "
          "(best vs best; median of per-round ratios)" % len(ours))
    print(ours[0][2])
    if ort:
        print(ort[0][2])
    for t in sorted(ours[0][0]):
        print("\n%d tokens, batch 32" % t)
        print("  %-17s %-17s %-17s %s" % ("", "ours", "onnxruntime", "ratio"))
        for ci, name in enumerate(COLS):
            a = [r[0][t][ci] for r in ours if t in r[0]]
            line = "  %-17s %7.1f / %-7.1f" % (name, max(a), statistics.median(a))
            b = [r[0][t][ci] for r in ort if t in r[0]]
            if b:
                per_round = [x / y for x, y in zip(a, b) if y > 0]
                line += " %7.1f / %-7.1f %.2fx / %.2fx" % (
                    max(b), statistics.median(b), max(a) / max(b), statistics.median(per_round))
            print(line)
    lat_a = [r[1] for r in ours if r[1]]
    lat_b = [r[1] for r in ort if r[1]]
    if lat_a:
        line = "\nlatency, 1 sentence of 16 tokens, best: ours %.2f ms" % min(lat_a)
        if lat_b:
            line += ", onnxruntime (1 thread) %.2f ms" % min(lat_b)
        print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out"))
