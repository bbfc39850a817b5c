"""The built-in all-MiniLM-L6-v2 embedder against an independent reference:
onnxruntime running the standard BERT graph built from the same
model.safetensors (bench/embed/make_onnx.py), tokenized by Hugging Face
`tokenizers` from the model's own tokenizer.json (bench/embed/ort_ref.py).

For several hundred varied texts (hand-written edge cases below, both
columns of tests/data/pii_corpus.tsv, and LoCoMo turns from ../shared/data
when that folder is there), the token ids must be equal and every pair of
vectors must have cosine >= 0.999; the reference itself must reproduce the
similarities sentence-transformers documents (0.6660, 0.1046, 0.1411).

Skips, saying why, without the model (scripts/fetch_model.sh), without the
C tool (tests/support/minilm_vectors.c, built next to stratad) or without a
Python that imports numpy, onnx, onnxruntime and tokenizers. That Python
is, in order: $STRATA_REF_PYTHON; this interpreter with $STRATA_REF_PYTHONPATH
or the cache scripts/fetch_ref_runtime.sh fills; this interpreter as is.
"""

import json
import os
import subprocess
import sys

import pytest

import strata_testlib as tl

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("STRATA_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
MODEL = os.environ.get("STRATA_MODEL_DIR", os.path.join(SRC, "models", "all-MiniLM-L6-v2"))
ORT_REF = os.path.join(SRC, "bench", "embed", "ort_ref.py")
REF_CACHE_SCRIPT = os.path.join(SRC, "scripts", "fetch_ref_runtime.sh")
MIN_COSINE = 0.999
# The one intended difference: HF's tokenizer turns these strings inside a
# text into the special tokens themselves ("[SEP]" -> 102); ours keeps user
# text as text ("[", "sep", "]"), so no input can forge a sentence boundary.
# Texts containing them are left out of the comparison.
SPECIAL = ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]")

# Texts chosen to exercise the tokenizer and the encoder where they are easy
# to get wrong: case, accents and other marks, CJK, scripts without
# spaces, emoji, control and zero-width characters, punctuation runs,
# numbers, URLs, code, words over 100 characters, length near and past the
# 256-token cut, empty and blank input.
EDGE = [
    "", " ", "\t\n", "a", "OK", "ok.", "The weather is lovely today.", "It's so sunny outside!",
    "He drove to the stadium.", "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "Café au lait, naïve façade, Zürich, São Paulo, Kraków, Ångström.",
    "Crème brûlée — déjà vu — résumé — coöperate — piñata",
    "Ελληνικά: Καλημέρα κόσμε", "Русский текст: привет, мир!", "Українська: ґава, їжак, єнот",
    "日本語のテキストと漢字", "我喜欢在北京吃饺子。", "한국어 문장입니다", "ภาษาไทยไม่มีช่องว่าง",
    "العربية: مرحبا بالعالم", "עברית: שלום עולם", "हिन्दी में एक वाक्य", "Tiếng Việt có dấu",
    "emoji 😀🎉👍🏽 and ❤️ and 🇫🇷", "math: ∑ x² ≤ ∞, α→β, √2 ≈ 1.414, 3×4=12",
    "quotes “curly” ‘single’ «guillemets» „low“", "ligatures: ﬁne ﬂow Ⅻ ① ＡＢＣ ｆｕｌｌｗｉｄｔｈ",
    "zero\u200bwidth\u200cjoin\u200dhere\ufeffbom", "soft\u00adhyphen and non\u00a0breaking space",
    "control\x01chars\x7fand\x1bescape", "tabs\tand\nnewlines\r\nand\u2028separators",
    "combining: e\u0301 a\u0308 n\u0303 (decomposed) vs é ä ñ",
    "!!!???...,,,;;;:::---___***", "(a) [b] {c} <d> \"e\" 'f' `g` |h| \\i/ ~j^ @k #l $m %n &o",
    "3.14159 2,718 1e-9 -42 +7 0x1F 1/2 50% $19.99 €5 £3 ¥100",
    "Call +1 (555) 123-4567 or email first.last+tag@example.co.uk",
    "https://example.com/path/to/page?query=1&x=y#frag and www.test.org",
    "def f(x):\n    return x ** 2  # square", "SELECT * FROM users WHERE id = 42;",
    "{\"json\": [1, 2, {\"nested\": true}], \"k\": null}",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "unaffable unbelievable re-enter co-operate state-of-the-art",
    "I'm, you're, they've, she'd, won't, can't, y'all, o'clock",
    "Meeting on 2024-03-15 at 14:30 UTC; deadline 15/03/2024.",
    "The user prefers dark mode and metric units.",
    "Alice moved from Berlin to Lisbon last spring and adopted a cat named Pixel.",
    "Remember that Bob is allergic to peanuts and shellfish.",
    "My favourite programming languages are C, Rust and OCaml.",
    "ok " * 300, "word " * 253, "word " * 254, "word " * 255,
    " ".join("token%d" % i for i in range(200)),
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. " * 6,
]


def pii_texts():
    """Both columns of the PII corpus: raw text and its masked form."""
    out = []
    with open(os.path.join(SRC, "tests", "data", "pii_corpus.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            out.extend(c for c in cols[1:3] if c)
    return out


def locomo_texts(limit=200):
    """Every k-th LoCoMo turn (and image caption), when ../shared/data has it.
    Read in place, never copied into the repository (its licence)."""
    path = os.path.join(SRC, "..", "shared", "data", "locomo", "locomo-dev.json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        convs = json.load(f)
    turns = []
    for conv in convs:
        c = conv["conversation"]
        for key in sorted(k for k in c if k.startswith("session_") and isinstance(c[k], list)):
            for t in c[key]:
                turns.append(t["text"])
                if t.get("blip_caption"):
                    turns.append(t["blip_caption"])
    step = max(1, len(turns) // limit)
    return turns[::step][:limit]


def reference_python():
    """(argv prefix, env) of a Python that imports the reference packages,
    or (None, reason)."""
    env = dict(os.environ)
    cands = []
    if os.environ.get("STRATA_REF_PYTHON"):
        cands.append(([os.environ["STRATA_REF_PYTHON"]], env))
    extra = os.environ.get("STRATA_REF_PYTHONPATH")
    if not extra and os.path.isfile(REF_CACHE_SCRIPT):
        # the cache for this interpreter's version
        r = subprocess.run(["bash", REF_CACHE_SCRIPT, "--print-dir"], capture_output=True,
                           text=True, env=dict(env, PYTHON=sys.executable))
        extra = r.stdout.strip() if r.returncode == 0 else ""
    if extra and os.path.isdir(extra):
        # -s: no user site; the target dir goes first so its numpy wins
        cands.append(([sys.executable, "-s"], dict(env, PYTHONPATH=extra)))
    cands.append(([sys.executable], env))
    probe = "import numpy, onnx, onnxruntime, tokenizers"
    for argv, e in cands:
        r = subprocess.run(argv + ["-c", probe], capture_output=True, text=True, env=e)
        if r.returncode == 0:
            return argv, e
    return None, ("no Python with numpy, onnx, onnxruntime and tokenizers "
                  "(scripts/fetch_ref_runtime.sh installs them; or set STRATA_REF_PYTHON)")


def c_tool():
    path = os.environ.get("STRATA_MINILM_VECTORS") or os.path.join(
        os.path.dirname(tl.STRATAD), "tests", "minilm_vectors")
    return path if os.access(path, os.X_OK) else None


def run_c(texts):
    inp = "".join(json.dumps(t) + "\n" for t in texts)
    r = subprocess.run([c_tool(), MODEL], input=inp, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines()]


def run_ref(py, env, onnx_path, texts, mode="embed"):
    inp = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    r = subprocess.run(py + [ORT_REF, mode, MODEL, onnx_path], input=inp, capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not os.path.isfile(os.path.join(MODEL, "model.safetensors")):
        pytest.skip("no model in %s (scripts/fetch_model.sh)" % MODEL)
    if not os.path.isfile(os.path.join(MODEL, "tokenizer.json")):
        pytest.skip("no tokenizer.json in %s (scripts/fetch_model.sh fetches it)" % MODEL)
    if c_tool() is None:
        pytest.skip("minilm_vectors not built next to stratad (set STRATA_MINILM_VECTORS)")
    py, env = reference_python()
    if py is None:
        pytest.skip(env)
    # ~90 MB, rebuilt per run (2 s) rather than cached: never a stale graph
    onnx_path = str(tmp_path_factory.mktemp("onnx") / "minilm.onnx")
    r = subprocess.run(py + [os.path.join(SRC, "bench", "embed", "make_onnx.py"), MODEL,
                             onnx_path], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return py, env, onnx_path


def test_reference_reproduces_documented_similarities(reference):
    py, env, onnx_path = reference
    out = run_ref(py, env, onnx_path, [], mode="check")
    sims = [float(x) for x in out.split(":")[1].split()]
    assert sims == pytest.approx([0.6660, 0.1046, 0.1411], abs=0.002), out


def test_ids_and_vectors_match_reference(reference):
    py, env, onnx_path = reference
    texts = [t for t in EDGE + pii_texts() + locomo_texts()
             if not any(sp in t for sp in SPECIAL)]
    assert len(texts) >= 300
    ours = run_c(texts)
    ref = [json.loads(line) for line in run_ref(py, env, onnx_path, texts).splitlines()]
    assert len(ours) == len(ref) == len(texts)
    bad_ids, cosines, max_diff = [], [], 0.0
    for text, a, b in zip(texts, ours, ref):
        if a["ids"] != b["ids"]:
            bad_ids.append((text, a["ids"][:40], b["ids"][:40]))
        va, vb = a["vec"], b["vec"]
        dot = sum(x * y for x, y in zip(va, vb))
        na = sum(x * x for x in va) ** 0.5
        nb = sum(y * y for y in vb) ** 0.5
        cosines.append((dot / (na * nb), text))
        max_diff = max(max_diff, max(abs(x - y) for x, y in zip(va, vb)))
    worst = sorted(cosines)[:5]
    print("\n%d texts: min cosine %.9f (1 - %.1e), max |component diff| %.2e; "
          "token ids differ for %d" % (len(texts), worst[0][0], 1.0 - worst[0][0], max_diff,
                                       len(bad_ids)))
    assert not bad_ids, "token ids differ (text, ours, reference): %r" % bad_ids[:5]
    assert worst[0][0] >= MIN_COSINE, "lowest cosines: %r" % [(c, t[:60]) for c, t in worst]
