"""Starts throwaway Hearth servers for the scripts that test a live one.

Used by fuzz_api.py and client_contract.py: builds the debug binary, starts
it on a free loopback port with a fresh data directory (SQLite) or database
(Postgres), and reads the address and the one-time setup code from its
console.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "openapi", "hearth.yaml")


def binary():
    """The debug binary, where cargo puts it (CARGO_TARGET_DIR or target/)."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(os.path.abspath(target), "debug", "hearth")


def build():
    subprocess.run(["cargo", "build", "--locked", "-p", "hearth"], cwd=ROOT, check=True)
    return binary()


class Server:
    """A running server: `base` URL and the store's `setup_code`."""

    def __init__(self, proc, base, setup_code):
        self.proc = proc
        self.base = base
        self.setup_code = setup_code

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(workdir, database_url=None, hearth=None):
    """Starts a new, uninitialised store; fails the script if it does not come up."""
    args = [hearth or binary(), "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
            # A new store's Argon2id cost, cut so setup and unlock take milliseconds.
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
    # Keep draining the console so the server never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return Server(proc, f"http://{addr}", code)


@contextlib.contextmanager
def running(database_url=None, hearth=None):
    with tempfile.TemporaryDirectory() as workdir:
        server = start(workdir, database_url, hearth)
        try:
            yield server
        finally:
            server.stop()


def backends(prefix):
    """(label, database URL) for SQLite and, when HEARTH_TEST_DATABASE_URL is
    set, a new Postgres database named PREFIX_…; CI must have Postgres."""
    yield "sqlite", None
    admin = os.environ.get("HEARTH_TEST_DATABASE_URL")
    if admin:
        name = f"{prefix}_{uuid.uuid4().hex}"
        subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
        yield "postgres", admin.rsplit("/", 1)[0] + "/" + name
    elif os.environ.get("CI"):
        sys.exit("HEARTH_TEST_DATABASE_URL is not set: run under scripts/with-postgres.sh")
