#!/usr/bin/env python3
"""Build an fp32 ONNX graph of all-MiniLM-L6-v2 (sentence-transformers: BERT,
mean pooling, L2 normalisation) straight from model.safetensors, so that
onnxruntime can serve as an independent reference for our C embedder
(src/providers/embed_minilm.c) and as the baseline of bench/embed.

No fp32 ONNX export of the model is published in a form we can fetch, and
the usual exporter needs torch; the graph is small enough to write by hand
with onnx.helper. It is the standard BERT graph, op for op what
transformers' BertModel computes, deliberately not our implementation's
shortcuts: padded batches with the additive attention mask, Q/K/V as three
MatMuls, LayerNormalization (eps 1e-12), exact GELU via Erf, mean pooling
over attention_mask, x / max(||x||, 1e-12).

    inputs   input_ids, attention_mask, token_type_ids: int64 [batch, seq]
    output   sentence_embedding: float32 [batch, 384]

    python3 make_onnx.py MODEL_DIR OUT.onnx

Needs numpy and onnx; the safetensors file is parsed here (8-byte header
length, JSON header, raw little-endian tensors), no safetensors package.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

H, HEADS, HD, F, LAYERS = 384, 12, 32, 1536, 6
OPSET = 17          # LayerNormalization is a standard op from 17 on


def load_safetensors(path):
    """{name: float32 ndarray} of every F32 tensor in the file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            continue        # embeddings.position_ids (I64): a buffer, not a weight
        a, b = meta["data_offsets"]
        arr = np.frombuffer(raw, dtype="<f4", count=(b - a) // 4, offset=base + a)
        out[name] = arr.reshape(meta["shape"]).astype(np.float32)
    # a bare BertModel saved from BertForX prefixes every name with "bert."
    if "embeddings.word_embeddings.weight" not in out:
        out = {k[len("bert."):]: v for k, v in out.items() if k.startswith("bert.")}
    return out


class Graph:
    """Tiny builder: named nodes and initializers, unique output names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = "%s_%d" % (op_type.lower(), self.n)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def linear(g, t, x, prefix):
    """x . W^T + b for a PyTorch Linear stored as weight [out][in]."""
    w = g.init(prefix + ".weight_t", t[prefix + ".weight"].T.copy())
    b = g.init(prefix + ".bias", t[prefix + ".bias"])
    return g.op("Add", [g.op("MatMul", [x, w]), b])


def layernorm(g, t, x, prefix):
    return g.op("LayerNormalization",
                [x, g.init(prefix + ".weight", t[prefix + ".weight"]),
                 g.init(prefix + ".bias", t[prefix + ".bias"])],
                axis=-1, epsilon=1e-12)


def build(t):
    g = Graph()
    i64 = lambda name, v: g.init(name, np.array(v, dtype=np.int64))  # noqa: E731
    f32 = lambda name, v: g.init(name, np.array(v, dtype=np.float32))  # noqa: E731

    # ---- embeddings: word + position + token type, LayerNorm
    word = g.op("Gather", [g.init("word_emb", t["embeddings.word_embeddings.weight"]),
                           "input_ids"])
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), i64("one_i", 1)], axis=0)
    pos_ids = g.op("Range", [i64("zero_i", 0), seq_len, i64("step_i", 1)])
    pos = g.op("Gather", [g.init("pos_emb", t["embeddings.position_embeddings.weight"]),
                          pos_ids])
    typ = g.op("Gather", [g.init("type_emb", t["embeddings.token_type_embeddings.weight"]),
                          "token_type_ids"])
    x = layernorm(g, t, g.op("Add", [g.op("Add", [word, pos]), typ]), "embeddings.LayerNorm")

    # ---- additive attention mask [batch, 1, 1, seq]: 0 for tokens, -10000 for padding
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    ext = g.op("Unsqueeze", [maskf, i64("axes_12", [1, 2])])
    ext = g.op("Mul", [g.op("Sub", [f32("one_f", 1.0), ext]), f32("neg_f", -10000.0)])

    shape_heads = i64("shape_heads", [0, -1, HEADS, HD])   # [b, s, 12, 32]
    shape_hidden = i64("shape_hidden", [0, -1, H])
    scale = f32("scale", 1.0 / math.sqrt(HD))
    half, one = f32("half", 0.5), f32("one_g", 1.0)
    rsqrt2 = f32("rsqrt2", 1.0 / math.sqrt(2.0))

    for layer in range(LAYERS):
        p = "encoder.layer.%d." % layer
        q = g.op("Transpose", [g.op("Reshape", [linear(g, t, x, p + "attention.self.query"),
                                                shape_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(g, t, x, p + "attention.self.key"),
                                                shape_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(g, t, x, p + "attention.self.value"),
                                                shape_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), ext])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, shape_hidden])
        attn = linear(g, t, ctx, p + "attention.output.dense")
        x = layernorm(g, t, g.op("Add", [attn, x]), p + "attention.output.LayerNorm")
        h = linear(g, t, x, p + "intermediate.dense")
        # exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
        h = g.op("Mul", [g.op("Mul", [h, half]),
                         g.op("Add", [one, g.op("Erf", [g.op("Mul", [h, rsqrt2])])])])
        out = linear(g, t, h, p + "output.dense")
        x = layernorm(g, t, g.op("Add", [out, x]), p + "output.LayerNorm")

    # ---- mean pooling over the attention mask, then L2 normalisation
    m3 = g.op("Unsqueeze", [maskf, i64("axes_2", [2])])            # [b, s, 1]
    axis1 = i64("axis_1", [1])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), axis1], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m3, axis1], keepdims=0), f32("min_count", 1e-9)])
    mean = g.op("Div", [summed, count])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), axis1], keepdims=1)])
    emb = g.op("Div", [mean, g.op("Max", [norm, f32("eps_norm", 1e-12)])])
    g.nodes.append(helper.make_node("Identity", [emb], ["sentence_embedding"]))

    ids = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])  # noqa
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", H])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="strata bench/embed/make_onnx.py")
    model.ir_version = 8        # accepted by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def make(model_dir, out_path):
    t = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    model = build(t)
    tmp = out_path + ".tmp"
    onnx.save_model(model, tmp)
    os.replace(tmp, out_path)
    return out_path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_onnx.py MODEL_DIR OUT.onnx")
    print("make_onnx: wrote", make(sys.argv[1], sys.argv[2]))
