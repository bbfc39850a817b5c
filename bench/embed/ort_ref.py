#!/usr/bin/env python3
"""all-MiniLM-L6-v2 under onnxruntime with Hugging Face `tokenizers`: the
independent reference for our C embedder (tests/integration/
test_minilm_reference.py) and the baseline of bench/embed/run.sh.

Nothing here shares code with ours: tokenization is the model's own
tokenizer.json run by HF's Rust tokenizer, the forward pass is the ONNX graph
of make_onnx.py run by onnxruntime's kernels (MLAS).

    ort_ref.py check MODEL_DIR [ONNX]        the documented similarities
    ort_ref.py embed MODEL_DIR [ONNX]        JSON lines {"text"} on stdin ->
                                             {"ids": [...], "vec": [...]} on stdout
    ort_ref.py bench MODEL_DIR [ONNX] [SECONDS]   sentences/s, 16/32/128 tokens,
                                             1 thread and all cores

ONNX defaults to bench/embed/out/minilm.onnx, built by make_onnx.py when
missing. Needs numpy, onnx (to build the graph), onnxruntime, tokenizers.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ONNX = os.path.join(HERE, "out", "minilm.onnx")
MAX_LEN = 256       # sentence_bert_config.json max_seq_length; our default max-len
BATCH = 32          # sentences per run, as in bench_minilm.c
# Same words and construction as bench_minilm.c: one WordPiece token each.
WORDS = ["memory", "agent", "stores", "facts", "about", "users", "and", "their", "preferences",
         "over", "time", "the", "system", "can", "recall", "events", "from", "last", "week",
         "quickly"]
DOCUMENTED = ["The weather is lovely today.", "It's so sunny outside!",
              "He drove to the stadium."]


def ensure_onnx(model_dir, path=None):
    path = path or DEFAULT_ONNX
    if not os.path.exists(path):
        sys.path.insert(0, HERE)
        import make_onnx  # noqa: E402  (needs the onnx package; only when building)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        make_onnx.make(model_dir, path)
    return path


def load_tokenizer(model_dir):
    """The model's tokenizer.json, with sentence-transformers' settings: the
    file says truncate at 128 and pad to 128, sentence-transformers overrides
    both (max_seq_length 256, pad to the longest of a batch)."""
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    return tok


def session(onnx_path, threads):
    """threads = 0: onnxruntime's default (all cores)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])


def run_ids(sess, id_lists):
    """Embeddings [n x 384] of token-id lists, one padded batch."""
    T = max(len(x) for x in id_lists)
    ids = np.zeros((len(id_lists), T), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, x in enumerate(id_lists):
        ids[i, :len(x)] = x
        mask[i, :len(x)] = 1
    return sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": np.zeros_like(ids)})[0]


def embed(sess, tok, texts, batch=BATCH):
    """(token ids per text, embeddings [n x 384]) in batches of `batch`."""
    ids = [e.ids for e in tok.encode_batch(list(texts))]
    vecs = [run_ids(sess, ids[i:i + batch]) for i in range(0, len(ids), batch)]
    return ids, np.concatenate(vecs) if vecs else np.zeros((0, 384), np.float32)


def bench_inputs(tok, n_tokens):
    """BATCH texts of exactly n_tokens tokens ([CLS] and [SEP] included)."""
    texts = [" ".join(WORDS[(w * 7 + b) % 20] for w in range(n_tokens - 2))
             for b in range(BATCH)]
    ids = [e.ids for e in tok.encode_batch(texts)]
    assert all(len(x) == n_tokens for x in ids), "bench words must be one token each"
    return ids


def rate(sess, ids, seconds):
    """(sentences/s of wall time, sentences per CPU second of this process)
    over repeated runs of the same batch."""
    run_ids(sess, ids)          # warm-up: first-run allocations and kernel selection
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        run_ids(sess, ids)
        n += len(ids)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu if cpu > 0 else 0.0


def main(argv):
    if len(argv) < 3 or argv[1] not in ("check", "embed", "bench"):
        sys.exit(__doc__)
    mode, model_dir = argv[1], argv[2]
    onnx_path = ensure_onnx(model_dir, argv[3] if len(argv) > 3 else None)
    tok = load_tokenizer(model_dir)
    if mode == "check":
        _, e = embed(session(onnx_path, 1), tok, DOCUMENTED)
        print("onnxruntime %s similarities: %.4f %.4f %.4f"
              % (ort.__version__, e[0] @ e[1], e[0] @ e[2], e[1] @ e[2]))
    elif mode == "embed":
        sess = session(onnx_path, 1)
        texts = [json.loads(line)["text"] for line in sys.stdin if line.strip()]
        ids, vecs = embed(sess, tok, texts)
        for i, v in zip(ids, vecs):
            print(json.dumps({"ids": i, "vec": [float(x) for x in v]}))
    else:
        seconds = float(argv[4]) if len(argv) > 4 else 3.0
        cores = os.cpu_count() or 1
        one, every = session(onnx_path, 1), session(onnx_path, cores)
        print("onnxruntime %s, intra_op_num_threads 1 and %d" % (ort.__version__, cores))
        print("%-7s %-6s %-13s %-16s %d-threads s/s" % ("tokens", "batch", "1-thread s/s",
                                                      "1-thread s/cpu-s", cores))
        for n_tokens in (16, 32, 128):
            ids = bench_inputs(tok, n_tokens)
            wall1, cpu1 = rate(one, ids, seconds)
            wall_all, _ = rate(every, ids, seconds)
            print("%-7d %-6d %-13.1f %-16.1f %.1f" % (n_tokens, BATCH, wall1, cpu1, wall_all),
                  flush=True)
        lat, _ = rate(one, bench_inputs(tok, 16)[:1], seconds)
        print("latency, 1 sentence of 16 tokens: %.2f ms" % (1000.0 / lat))


if __name__ == "__main__":
    main(sys.argv)
