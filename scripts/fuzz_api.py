#!/usr/bin/env python3
"""Fuzzes a live Hearth against openapi/hearth.yaml with schemathesis.

Starts the server (SQLite, and Postgres when HEARTH_TEST_DATABASE_URL is set),
sets the store up, writes a few samples, then runs `st run` with the owner's
token: any 5xx, response that violates the spec, or hang fails the run.

    scripts/fuzz_api.py [--max-examples N] [--max-time SECONDS]

The defaults keep a CI run to a few minutes; raise them for a longer local run.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import hearth_server
from hearth_server import ROOT, SPEC

PASSPHRASE = "fuzzing passphrase, long enough"


def request(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def fuzz(label, database_url, args):
    with hearth_server.running(database_url) as server:
        base, code = server.base, server.setup_code
        token = request("POST", f"{base}/v1/setup",
                        {"setup_code": code, "passphrase": PASSPHRASE})["token"]
        samples = [{"sync_id": str(uuid.uuid4()), "type": t, "start": "2026-01-01T10:00:00+01:00",
                    "end": "2026-01-01T10:05:00+01:00", "value": v, "unit": u}
                   for t, v, u in [("step_count", 120, "count"), ("heart_rate", 61, "count/min"),
                                   ("body_mass", 70.5, "kg")]]
        request("POST", f"{base}/v1/samples", {"samples": samples}, token)
        started = time.time()
        cmd = ["st", "run", SPEC, "--url", base,
               "--header", f"Authorization: Bearer {token}",
               "--checks", "all",
               # Whether a value or unit is acceptable depends on the sample type,
               # which a schema cannot express: schema-valid input may be refused.
               "--exclude-checks", "positive_data_acceptance",
               # Locking ends the session the rest of the run needs.
               "--exclude-path", "/v1/lock",
               "--max-examples", str(args.max_examples),
               "--max-time", str(args.max_time),
               "--request-timeout", "20",
               "--seed", str(args.seed),
               # One worker: on Python 3.11 two generator threads parsing
               # source at once can trip the interpreter's AST recursion
               # check ("AST constructor recursion depth mismatch").
               "--workers", "1",
               "--warnings", "off"]
        print(f"== schemathesis on {label}: {' '.join(cmd[:4])} …", flush=True)
        # Serializers for the media types JSON does not cover (fuzz_hooks.py).
        env = dict(os.environ, SCHEMATHESIS_HOOKS="fuzz_hooks",
                   PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(os.path.abspath(__file__)),
                                                            os.environ.get("PYTHONPATH")])))
        result = subprocess.run(cmd, cwd=ROOT, env=env)
        print(f"== schemathesis on {label} took {time.time() - started:.0f} s", flush=True)
        return result.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "40")))
    parser.add_argument("--max-time", type=int, default=int(os.environ.get("FUZZ_MAX_TIME", "120")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "7380")))
    args = parser.parse_args()
    hearth_server.build()
    failed = 0
    for label, database_url in hearth_server.backends("hearth_fuzz"):
        failed |= fuzz(label, database_url, args)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
