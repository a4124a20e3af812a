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
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEARTH = os.path.join(ROOT, "target", "debug", "hearth")
SPEC = os.path.join(ROOT, "openapi", "hearth.yaml")
PASSPHRASE = "fuzzing passphrase, long enough"


def request(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def start_server(workdir, database_url):
    args = [HEARTH, "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
            "--kdf-memory-kib", "256", "--kdf-iterations", "1", "--data-dir", workdir]
    if database_url:
        args += ["--database-url", database_url]
    env = dict(os.environ, HEARTH_IDLE_LOCK_SECS="0")
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    addr = code = None
    deadline = time.time() + 30
    while (addr is None or code is None) and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if "Setup code: " in line:
            code = line.rsplit("Setup code: ", 1)[1].strip()
        try:
            addr = json.loads(line).get("fields", {}).get("addr") or addr
        except ValueError:
            pass
    if addr is None or code is None:
        proc.kill()
        sys.exit("hearth did not start")
    # Keep draining stderr so the server never blocks on a full pipe.
    subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
    return proc, f"http://{addr}", code


def fuzz(label, database_url, args):
    with tempfile.TemporaryDirectory() as workdir:
        proc, base, code = start_server(workdir, database_url)
        try:
            token = request("POST", f"{base}/v1/setup",
                            {"setup_code": code, "passphrase": PASSPHRASE})["token"]
            samples = [{"id": str(uuid.uuid4()), "type": t, "start": "2026-01-01T10:00:00+01:00",
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
                   "--workers", "2",
                   "--warnings", "off"]
            print(f"== schemathesis on {label}: {' '.join(cmd[:4])} …", flush=True)
            result = subprocess.run(cmd, cwd=ROOT)
            print(f"== schemathesis on {label} took {time.time() - started:.0f} s", flush=True)
            return result.returncode
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "40")))
    parser.add_argument("--max-time", type=int, default=int(os.environ.get("FUZZ_MAX_TIME", "120")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "7380")))
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--locked", "-p", "hearth"], cwd=ROOT, check=True)
    failed = fuzz("sqlite", None, args)
    admin = os.environ.get("HEARTH_TEST_DATABASE_URL")
    if admin:
        name = f"hearth_fuzz_{uuid.uuid4().hex}"
        subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
        failed |= fuzz("postgres", admin.rsplit("/", 1)[0] + "/" + name, args)
    elif os.environ.get("CI"):
        sys.exit("HEARTH_TEST_DATABASE_URL is not set: run under scripts/with-postgres.sh")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
