#!/usr/bin/env python3
"""Build the search-quality development set from the docstrings of this machine's Python.

Run with: python3 scripts/build-devset.py [--out target/devset] [--stdlib-only]
(or `bash scripts/build-devset.sh`). Needs only the Python standard library; no network.

A known-item set: every documented public module, class, function and method with a real
summary and a substantial body becomes one document (content = the docstring without its
summary); 500 of them, sampled with a fixed seed, become queries (query = the summary, expected =
that document's key). Every document stays in the corpus, so the other documents are the
distractors.

Where the text comes from: the docstrings are read from the source files with `ast` (nothing is
imported, so no module's import side effects run) of
  * the standard library of the running interpreter (`sys.prefix/lib/pythonX.Y`), and
  * unless --stdlib-only, the third-party packages installed in that interpreter's site-packages.
After the filters below, the standard library of CPython 3.11.7 alone gives only 1,256 documents,
far from the 10,000-20,000 a useful corpus needs (with 500 queries, 40% of the documents would be
answers); the installed packages bring the set to about 9,000 (sympy, networkx, IPython,
botocore, pydantic, docutils and some 60 more). The manifest lists every distribution (name and
version) that contributed, so a rebuild on another machine can tell why its SHA-256 differs.

Filters (counts per filter are printed and written to manifest.json):
  * paths: no test packages or modules (test, tests, testing, idle_test, conftest, test_*,
    *_test), no vendored copies (_vendor, vendored, extern), no generated codec tables
    (encodings), no demos (turtledemo), no pydoc_data;
  * names: every dotted component public (no leading underscore: private helpers, dunder
    methods such as __init__, __main__ modules); nested functions are skipped; when a name is
    defined twice (conditional definitions, property setters) the first definition counts;
  * summary: the first paragraph of the cleaned docstring, at most 2 lines (joined with a
    space) and 4 to 40 words; not a signature (`name(args)`, `->`), not an rst directive or a
    doctest, not ending in ':' (it introduces a list, it does not summarise), and not containing
    the object's own dotted name;
  * body (the rest): at least 20 words and 120 characters; no NUL or other control characters;
  * duplicates: documents whose body is identical (after collapsing whitespace) to an earlier
    key's body are dropped (a verbatim copy carries no information);
  * queries are sampled only from documents whose summary is unique in the corpus
    (case-insensitive, whitespace collapsed): with two documents sharing a summary, the query
    would have two right answers; and whose body has at least 20 words outside doctest examples
    (a body of only `>>>` code gives a description nothing to match). Those documents stay in
    the corpus as distractors.

Titles: two corpora with the same documents, keys and queries are written.
  * DIR/docstrings/ (the primary set): a neutral title naming where the object lives but not
    the object, e.g. "function in json" for json.dumps, "method of json.JSONEncoder" for
    json.JSONEncoder.encode. The summary is written by the same author as the name and often
    repeats it ("Join two or more pathname components" for os.path.join), so a title holding
    the name lets a lexical matcher find the answer from the name alone, which an arbitrary
    document collection's titles would not offer.
  * DIR/docstrings-named/: title = the qualified name (json.dumps), to show how much the name
    helps.

Output per set: corpus.jsonl (the `marketking import` format: key, title, content, source,
metadata), queries.jsonl ({"query", "expected": [key]}), manifest.json and SHA256SUMS
(`sha256sum -c SHA256SUMS` checks it). The "dataset SHA-256" is the SHA-256 of the SHA256SUMS
file, which names both data files. The same interpreter with the same installed packages gives
byte-identical files.
"""

import argparse
import ast
import collections
import hashlib
import json
import os
import random
import re
import sys

SEED = 13
QUERIES = 500
MIN_BODY_WORDS = 20
MIN_BODY_CHARS = 120
MIN_SUMMARY_WORDS = 4
MAX_SUMMARY_WORDS = 40
MAX_SUMMARY_LINES = 2

SKIP_DIRS = {
    "__pycache__", "test", "tests", "testing", "idle_test", "encodings", "turtledemo", "pydoc_data",
    "_vendor", "vendored", "extern", "site-packages",
}
SIGNATURE = re.compile(r"^[\w.]+\s*\(.*\)|->")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
WS = re.compile(r"\s+")
RULE = re.compile(r"^[=\-~^*+#]{3,}$")


def is_test_name(part):
    return part in ("conftest",) or part.startswith("test_") or part.endswith("_test") or part == "test"


def module_files(root, source):
    """(relative path, dotted module name) of every candidate .py file under root, sorted."""
    found = []
    for d, dirs, files in os.walk(root):
        # Sorted in place so the walk order, and so the output, never depends on the file system.
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and x.isidentifier())
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(d, f), root)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not parts or not all(p.isidentifier() for p in parts):
                continue
            found.append((rel, parts, source))
    return found


def definitions(body, prefix, in_class):
    """(dotted name, kind, docstring node owner) for public classes/functions in body."""
    for node in body:
        if isinstance(node, (ast.If, ast.Try)):
            inner = list(node.body) + list(node.orelse) + list(getattr(node, "finalbody", []))
            for h in getattr(node, "handlers", []):
                inner += h.body
            yield from definitions(inner, prefix, in_class)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("_"):
                yield None, "private", None
                continue
            name = prefix + "." + node.name
            if isinstance(node, ast.ClassDef):
                yield name, "class", node
                yield from definitions(node.body, name, True)
            else:
                yield name, "method" if in_class else "function", node


def split_docstring(doc):
    """(summary, body) of a cleaned docstring, or a rejection reason."""
    paragraphs = re.split(r"\n\s*\n", doc, maxsplit=1)
    if len(paragraphs) < 2:
        return None, "no body"
    first, body = paragraphs[0], paragraphs[1].strip()
    lines = first.split("\n")
    if len(lines) > MAX_SUMMARY_LINES:
        return None, "summary too long"
    return (WS.sub(" ", first).strip(), body), None


def summary_problem(summary, name):
    words = summary.split()
    if len(words) < MIN_SUMMARY_WORDS:
        return "summary too short"
    if len(words) > MAX_SUMMARY_WORDS:
        return "summary too long"
    if SIGNATURE.search(summary):
        return "summary is a signature"
    if summary.startswith(("..", ":", ">>>", "@", "#")) or summary.endswith(":"):
        return "summary is markup or a heading"
    if name.lower() in summary.lower():
        return "summary names the object"
    return None


def neutral_title(name, kind):
    parent = name.rsplit(".", 1)[0] if "." in name else None
    if kind == "module":
        return f"module in {parent}" if parent else "top-level module"
    if kind == "method":
        return f"method of {parent}"
    return f"{kind} in {parent}"


def distributions(site):
    """Top-level module name -> "dist version" for the installed distributions (from dist-info)."""
    owner = {}
    for entry in sorted(os.listdir(site)):
        if not entry.endswith(".dist-info"):
            continue
        meta = {}
        try:
            with open(os.path.join(site, entry, "METADATA"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break
                    k, _, v = line.partition(":")
                    meta.setdefault(k.strip(), v.strip())
        except OSError:
            continue
        dist = f"{meta.get('Name', entry)} {meta.get('Version', '?')}"
        try:
            with open(os.path.join(site, entry, "RECORD"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    top = line.split(",", 1)[0].split("/", 1)[0]
                    if top.endswith(".py"):
                        top = top[:-3]
                    if top.isidentifier():
                        owner.setdefault(top, dist)
        except OSError:
            continue
    return owner


def collect(args, stats):
    lib = os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2])
    stdlib_source = "python-%d.%d.%d-stdlib" % sys.version_info[:3]
    roots = [(lib, "stdlib")]
    site = os.path.join(lib, "site-packages")
    owners = {}
    if not args.stdlib_only and os.path.isdir(site):
        roots.append((site, "site-packages"))
        owners = distributions(site)
    docs, seen = [], set()
    used_dists = set()
    for root, origin in roots:
        for rel, parts, _ in module_files(root, origin):
            stats["files"] += 1
            if any(p.startswith("_") for p in parts):
                stats["skipped: private module"] += 1
                continue
            if any(is_test_name(p) for p in parts):
                stats["skipped: test module"] += 1
                continue
            try:
                with open(os.path.join(root, rel), "rb") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, ValueError):
                stats["skipped: file does not parse"] += 1
                continue
            module = ".".join(parts)
            if origin == "stdlib":
                source = stdlib_source
            else:
                source = "site-packages:" + owners.get(parts[0], parts[0] + " ?")
            items = [(module, "module", tree)] + list(definitions(tree.body, module, False))
            for name, kind, node in items:
                if name is None:
                    stats["skipped: private name"] += 1
                    continue
                doc = ast.get_docstring(node, clean=True)
                if not doc:
                    continue
                stats["docstrings"] += 1
                if name in seen:
                    stats["skipped: name defined twice"] += 1
                    continue
                seen.add(name)
                split, why = split_docstring(doc)
                if why is None:
                    summary, body = split
                    why = summary_problem(summary, name)
                if why is None:
                    if len(body.split()) < MIN_BODY_WORDS or len(body) < MIN_BODY_CHARS:
                        why = "body too small"
                    elif CONTROL.search(summary + body):
                        why = "control characters"
                    else:
                        try:
                            (summary + body).encode("utf-8")
                        except UnicodeEncodeError:
                            why = "not encodable as UTF-8"
                if why is not None:
                    stats["skipped: " + why] += 1
                    continue
                if origin != "stdlib":
                    used_dists.add(owners.get(parts[0], parts[0] + " ?"))
                docs.append({
                    "key": name,
                    "kind": kind,
                    "summary": summary,
                    "body": body,
                    "source": source,
                    "module": module,
                    "path": ("Lib/" if origin == "stdlib" else "site-packages/") + rel.replace(os.sep, "/"),
                    "line": getattr(node, "lineno", 1),
                })
    return docs, sorted(used_dists)


def prose_words(body):
    """Words of the body outside doctest examples (a `>>>` line up to the next blank line)."""
    words, in_example = 0, False
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_example = True
        elif not stripped:
            in_example = False
        if not in_example and not RULE.match(stripped):
            words += len(stripped.split())
    return words


def normal(text):
    return WS.sub(" ", text).strip().lower()


def build(args):
    stats = collections.Counter()
    docs, dists = collect(args, stats)
    # Verbatim duplicate bodies: the first key (sorted) keeps it.
    docs.sort(key=lambda d: d["key"])
    by_body, kept = set(), []
    for d in docs:
        b = normal(d["body"])
        if b in by_body:
            stats["skipped: duplicate body"] += 1
            continue
        by_body.add(b)
        kept.append(d)
    docs = kept
    summaries = {}
    for d in docs:
        summaries[normal(d["summary"])] = summaries.get(normal(d["summary"]), 0) + 1
    stats["documents"] = len(docs)
    eligible = []
    for d in docs:
        if summaries[normal(d["summary"])] > 1:
            stats["not a query: summary shared with another document"] += 1
        elif prose_words(d["body"]) < MIN_BODY_WORDS:
            stats["not a query: fewer than %d words outside doctest examples" % MIN_BODY_WORDS] += 1
        else:
            eligible.append(d)
    stats["documents that can be queries"] = len(eligible)
    if len(eligible) < args.queries:
        sys.exit(f"only {len(eligible)} documents can be queries, fewer than --queries {args.queries}")
    sample = random.Random(SEED).sample(eligible, args.queries)
    leak = sum(1 for d in sample if re.search(r"\b%s\b" % re.escape(d["key"].rsplit(".", 1)[-1].lower()),
                                               d["summary"].lower()))
    stats["queries"] = len(sample)
    stats["queries whose summary contains the object's own (last) name"] = leak
    return docs, sample, stats, dists


def write_set(out, docs, sample, titles, manifest):
    os.makedirs(out, exist_ok=True)
    corpus_path, queries_path = os.path.join(out, "corpus.jsonl"), os.path.join(out, "queries.jsonl")

    def line(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"

    with open(corpus_path, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(line({
                "key": d["key"],
                "title": titles(d),
                "content": d["body"],
                "source": d["source"],
                "metadata": {"kind": d["kind"], "module": d["module"], "path": d["path"], "line": d["line"]},
            }))
    with open(queries_path, "w", encoding="utf-8", newline="\n") as f:
        for d in sample:
            f.write(line({"query": d["summary"], "expected": [d["key"]]}))
    sums = ""
    for name, path in (("corpus.jsonl", corpus_path), ("queries.jsonl", queries_path)):
        with open(path, "rb") as f:
            sums += f"{hashlib.sha256(f.read()).hexdigest()}  {name}\n"
    with open(os.path.join(out, "SHA256SUMS"), "w", encoding="utf-8", newline="\n") as f:
        f.write(sums)
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return sums, hashlib.sha256(sums.encode()).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--out", default=os.path.join(here, "..", "target", "devset"), help="output folder")
    p.add_argument("--stdlib-only", action="store_true", help="only the standard library (1,256 documents with CPython 3.11.7)")
    p.add_argument("--queries", type=int, default=QUERIES, help="number of queries (default 500)")
    args = p.parse_args()
    docs, sample, stats, dists = build(args)
    base = {
        "python": sys.version.split()[0],
        "seed": SEED,
        "stdlib_only": args.stdlib_only,
        "documents": len(docs),
        "queries": len(sample),
        "filters": dict(sorted(stats.items())),
        "distributions": dists,
    }
    for k, v in sorted(stats.items()):
        print(f"{k}: {v}")
    variants = [
        ("docstrings", "neutral: kind and parent, e.g. 'function in json'", lambda d: neutral_title(d["key"], d["kind"])),
        ("docstrings-named", "the qualified name, e.g. 'json.dumps'", lambda d: d["key"]),
    ]
    for folder, what, titles in variants:
        out = os.path.normpath(os.path.join(args.out, folder))
        sums, digest = write_set(out, docs, sample, titles, dict(base, title=what))
        print(f"\n{out}: {len(docs)} documents, {len(sample)} queries, title {what}")
        print(sums, end="")
        print(f"dataset sha256 {digest}")


if __name__ == "__main__":
    main()
