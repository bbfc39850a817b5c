#!/usr/bin/env python3
"""Reference all-MiniLM-L6-v2 in NumPy (matrix products in NumPy's bundled
OpenBLAS), for bench/embed/run.sh: same inputs as bench_minilm.c, sentences/s
single-threaded, and the three documented similarities as a cross-check.
Inputs are token ids built from the vocabulary directly (no tokenizer).

    python3 ref_numpy.py MODEL_DIR [SECONDS_PER_CELL]
"""
import json
import math
import os
import struct
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

WORDS = ["memory", "agent", "stores", "facts", "about", "users", "and", "their", "preferences",
         "over", "time", "the", "system", "can", "recall", "events", "from", "last", "week",
         "quickly"]


def load(model_dir):
    raw = open(os.path.join(model_dir, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    t = {}
    for k, v in hdr.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        t[k] = np.frombuffer(raw, dtype="<f4", count=(b - a) // 4, offset=base + a).reshape(v["shape"])
    return t


def ln(x, g, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-12) * g + b


def ERF(x):
    """erf, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def forward(t, batch_ids):
    """batch_ids: list of equal-length id lists (no padding needed here)."""
    ids = np.array(batch_ids)
    B, T = ids.shape
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:T] \
        + t["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    for l in range(6):
        p = "encoder.layer.%d." % l
        def lin(h, name):
            return h @ t[p + name + ".weight"].T + t[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(B, T, 12, 32).transpose(0, 2, 1, 3)
        k = lin(x, "attention.self.key").reshape(B, T, 12, 32).transpose(0, 2, 1, 3)
        v = lin(x, "attention.self.value").reshape(B, T, 12, 32).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(32)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        c = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, 384)
        x = ln(x + lin(c, "attention.output.dense"), t[p + "attention.output.LayerNorm.weight"],
               t[p + "attention.output.LayerNorm.bias"])
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + ERF(h / math.sqrt(2.0)))
        x = ln(x + lin(h, "output.dense"), t[p + "output.LayerNorm.weight"],
               t[p + "output.LayerNorm.bias"])
    e = x.mean(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main():
    model_dir = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    t = load(model_dir)
    vocab = {w.rstrip("\n"): i for i, w in enumerate(open(os.path.join(model_dir, "vocab.txt")))}
    docs = [[101, 1996, 4633, 2003, 8403, 2651, 1012, 102],
            [101, 2009, 1005, 1055, 2061, 11559, 2648, 999, 102],
            [101, 2002, 5225, 2000, 1996, 3346, 1012, 102]]   # He drove to the stadium.
    e = np.concatenate([forward(t, [d]) for d in docs])
    print("numpy reference similarities: %.4f %.4f %.4f" % (e[0] @ e[1], e[0] @ e[2], e[1] @ e[2]))
    print("%-8s %-6s %-14s" % ("tokens", "batch", "numpy s/s"))
    for T in (16, 32, 128):
        batch = [[101] + [vocab[WORDS[(w * 7 + b) % 20]] for w in range(T - 2)] + [102]
                 for b in range(32)]
        n, t0 = 0, time.time()
        while time.time() - t0 < seconds:
            forward(t, batch)
            n += len(batch)
        print("%-8d %-6d %-14.1f" % (T, 32, n / (time.time() - t0)), flush=True)


if __name__ == "__main__":
    main()
