"""Schemathesis hooks for scripts/schemathesis.sh.

OpenAPI cannot state a rule that ties two fields together, so a generator that only reads the
schema makes requests the service rightly rejects, and `--checks all` (positive_data_acceptance)
counts each one as a failure. The hooks below drop exactly those generated bodies; every other
generated request, including every negative one, is still sent.

Rules (each is documented in the field's description and enforced by marketking-core, which
answers 400 naming the field):
- POST /v1/search: `mmr.fetch_k` is at least `k` (k defaults to 10).
"""

import schemathesis

DEFAULT_K = 10


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@schemathesis.hook
def filter_body(ctx, body):
    if not isinstance(body, dict):
        return True
    mmr = body.get("mmr")
    if not isinstance(mmr, dict):
        return True
    fetch_k = _int(mmr.get("fetch_k"))
    k = _int(body.get("k", DEFAULT_K))
    if fetch_k is None or k is None:
        return True
    return fetch_k >= k
