"""Schemathesis hooks for scripts/fuzz_api.py (loaded via SCHEMATHESIS_HOOKS).

`POST /v1/imports` takes a raw `application/zip` body, which schemathesis has
no serializer for: generated binary values are sent as they are, anything
else as its JSON text, so the endpoint is fuzzed with arbitrary bytes.
"""

import json

import schemathesis


@schemathesis.serializer("application/zip")
def raw_bytes(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()
