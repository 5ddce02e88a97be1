#!/usr/bin/env python3
"""Embedding throughput of sentence-transformers (PyTorch CPU) for BENCHMARKS.md, on the same
text files as `marketking-benches --bin embed_bench` (scripts/bench-embed.sh runs both).

  make-texts CORPUS.jsonl MODEL_DIR OUT_DIR   writes short.txt (~16 word pieces), medium.txt
                                              (~128) and long.txt (~256) from the corpus
  run MODEL_DIR THREADS FILE...               texts/s per file, batch 32
"""
import json, os, resource, sys, time


def make_texts(corpus, model_dir, out):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding(); tok.no_truncation()
    texts = []
    with open(corpus) as f:
        for line in f:
            d = json.loads(line)
            texts.append(" ".join((d["title"] + ". " + d["content"]).split()))
    os.makedirs(out, exist_ok=True)
    # Word-prefixes of real documents whose word-piece count (with [CLS]/[SEP]) lands near each
    # target: the same texts for both engines.
    for name, target, count in (("short", 16, 2000), ("medium", 128, 500), ("long", 256, 500)):
        picked = []
        for t in texts:
            words = t.split()
            lo, hi = 1, len(words)
            if len(tok.encode(t).ids) < target:
                continue
            while lo < hi:  # shortest prefix with at least `target` pieces
                mid = (lo + hi) // 2
                if len(tok.encode(" ".join(words[:mid])).ids) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            picked.append(" ".join(words[:lo]))
            if len(picked) == count:
                break
        with open(os.path.join(out, name + ".txt"), "w") as f:
            f.write("\n".join(picked) + "\n")
        lens = [len(tok.encode(p).ids) for p in picked]
        print(f"{name}: {len(picked)} texts, mean {sum(lens)/len(lens):.1f} word pieces")


def run(model_dir, threads, files):
    import torch
    torch.set_num_threads(int(threads))
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm up"] * 8, batch_size=32)
    for f in files:
        texts = [l for l in open(f).read().split("\n") if l]
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        secs = time.perf_counter() - start
        print(f"{f}\t{len(texts)}\ttexts\t{secs:.2f}\ts\t{len(texts)/secs:.1f}\ttexts/s\t(torch {torch.__version__}, {threads} threads)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    if sys.argv[1] == "make-texts":
        make_texts(*sys.argv[2:5])
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "golden":
        from sentence_transformers import SentenceTransformer
        m = SentenceTransformer(sys.argv[2], device="cpu")
        v = m.encode(["The cat sits on the mat."])[0]
        print("golden", [round(float(x), 7) for x in v[:5]])
        e = m.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
        print("quick start similarities", m.similarity(e, e))
