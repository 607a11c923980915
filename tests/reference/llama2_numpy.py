#!/usr/bin/env python3
"""An independent llama2.c reference in numpy float64, written from the checkpoint format in
../shared/models/README.md and sharing no code with kvstream's C++ runner.

It runs each whole context in one causal pass (no KV cache) and prints the pooled continuation
perplexity exactly as `kvstream model score` defines it: the KV of the first C tokens, tokens
C.. fed at positions C.., predictions of tokens C+1.. scored.
"""
import argparse
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // heads
    kv_dim = kv_heads * head_dim
    w = np.frombuffer(data, dtype="<f4", offset=28).astype(np.float64)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = w[pos:pos + n].reshape(shape)
        pos += n
        return out

    m = {
        "dim": dim, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "vocab": vocab,
        "layers": layers,
    }
    m["emb"] = take(vocab, dim)
    m["rms_att"] = take(layers, dim)
    m["wq"] = take(layers, dim, dim)
    m["wk"] = take(layers, kv_dim, dim)
    m["wv"] = take(layers, kv_dim, dim)
    m["wo"] = take(layers, dim, dim)
    m["rms_ffn"] = take(layers, dim)
    m["w1"] = take(layers, hidden, dim)
    m["w2"] = take(layers, dim, hidden)
    m["w3"] = take(layers, hidden, dim)
    m["rms_final"] = take(dim)
    take(seq_len, head_dim // 2)  # RoPE tables in the file: computed below instead
    take(seq_len, head_dim // 2)
    m["cls"] = m["emb"] if shared else take(vocab, dim)
    if pos != w.size:
        sys.exit(f"{path}: {w.size - pos} floats left over; not a llama2.c legacy checkpoint")
    return m


def rmsnorm(x, weight):
    return weight * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def rope(x, cos, sin):
    # x: [T, heads, head_dim]; rotate pairs (2i, 2i+1).
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def logits(m, tokens):
    T = len(tokens)
    hd, H, KVH = m["head_dim"], m["heads"], m["kv_heads"]
    freq = 10000.0 ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * freq[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    x = m["emb"][np.asarray(tokens)]
    for l in range(m["layers"]):
        xb = rmsnorm(x, m["rms_att"][l])
        q = rope((xb @ m["wq"][l].T).reshape(T, H, hd), cos, sin)
        k = rope((xb @ m["wk"][l].T).reshape(T, KVH, hd), cos, sin)
        v = (xb @ m["wv"][l].T).reshape(T, KVH, hd)
        k = np.repeat(k, H // KVH, axis=1)  # query head h reads KV head h // (H / KVH)
        v = np.repeat(v, H // KVH, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(axis=-1, keepdims=True))
        att /= att.sum(axis=-1, keepdims=True)
        out = np.einsum("hts,shd->thd", att, v).reshape(T, -1)
        x = x + out @ m["wo"][l].T
        xb = rmsnorm(x, m["rms_ffn"][l])
        h1, h3 = xb @ m["w1"][l].T, xb @ m["w3"][l].T
        x = x + ((h1 / (1.0 + np.exp(-h1))) * h3) @ m["w2"][l].T
    return rmsnorm(x, m["rms_final"]) @ m["cls"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    m = load(args.model)
    with open(args.tokens) as f:
        contexts = [[int(t) for t in line.split()] for line in f if line.strip()]
    if args.limit:
        contexts = contexts[:args.limit]
    nll, scored = 0.0, 0
    for ctx in contexts:
        z = logits(m, ctx)[args.ctx:len(ctx) - 1]
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll -= logp[np.arange(len(z)), np.asarray(ctx[args.ctx + 1:])].sum()
        scored += len(z)
    print(json.dumps({"contexts": len(contexts), "tokens_scored": scored, "nll_sum": nll,
                      "ppl": float(np.exp(nll / scored))}))


if __name__ == "__main__":
    main()
