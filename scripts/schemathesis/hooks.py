"""Schemathesis hooks for scripts/schemathesis.sh.

OpenAPI cannot state a rule that ties two fields together, or that a string parameter holds a
JSON document, so a generator that only reads the schema makes requests the service rightly
rejects, and `--checks all` (positive_data_acceptance) counts each one as a failure. The hooks
below drop or repair exactly those generated requests; every other generated request, including
every negative one, is still sent.

Rules (each is documented in the field's description and enforced by the service, which answers
400 or 422 naming the field):
- `filter` query parameters (GET /v1/documents, /v1/count, /v1/export) hold the filter
  language's JSON: a generated string that is not a JSON object is replaced by a valid filter.
- POST /v1/jobs/import reads `path` only under the directory the service allows
  (MARKETKING_IMPORT_DIR), which these runs do not set: a generated `path` is dropped (the
  body is the input then); the route's tests cover paths.
- POST /v1/import takes JSONL (one document per line): the serializer below sends a generated
  string as one document whose content is that string (less NUL characters, which no stored
  text may hold).
"""

import json

import schemathesis

VALID_FILTER = '{"source": "catalog"}'

# What the service trims as blank: Rust's `char::is_whitespace` (Unicode White_Space). Python's
# `str.strip()` also strips U+001C..U+001F, so a filter of "\x1e" looked empty here (and was
# sent as it was) while the service, rightly, refused it as JSON.
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"


def _is_filter(text):
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return False
    # Only plain `field: scalar` conditions: anything else may be a filter the service rightly
    # refuses (an unknown operator, an empty path).
    return isinstance(value, dict) and all(
        isinstance(k, str) and k.isidentifier() and not k.startswith("_") and isinstance(v, (str, int, float, bool))
        for k, v in value.items()
    )


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict):
        query.pop("path", None)
    if isinstance(query, dict) and isinstance(query.get("filter"), str) and query["filter"].strip(RUST_WHITESPACE):
        if not _is_filter(query["filter"]):
            query["filter"] = VALID_FILTER
    return query


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if not isinstance(value, str):
        # A negative case (the schema says a string): no text at all, which the service refuses
        # (an empty import). The JSON of the value would be a line, which `skip_invalid`
        # rightly skips with a 200 report.
        return b""
    text = value
    # Stored text holds no NUL (a documented rule of every text field).
    # Lone surrogates (which JSON text cannot carry) become "?".
    clean = text.replace("\0", "").encode("utf-8", "replace").decode("utf-8")
    content = clean if clean.strip() else "empty"
    return (json.dumps({"title": "generated", "content": content}) + "\n").encode()
