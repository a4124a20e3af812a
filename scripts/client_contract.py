#!/usr/bin/env python3
"""Proves openapi/hearth.yaml by driving a live Hearth with a generated client.

Generates a Python client from the description with openapi-python-client
(the version pinned in scripts/client-contract-requirements.txt), starts the
server on SQLite (and on Postgres when HEARTH_TEST_DATABASE_URL is set, as
under scripts/with-postgres.sh), and runs the README's flows through the
generated operations and models only: setup and unlock, registering an app,
minting a credential, plain, device, correlation, workout and route samples,
lists, statistics, buckets and the change feed.

A flow fails when the server answers other than the README says, and equally
when the description cannot express it: an operation missing, a request body
whose model cannot carry a documented field, a status the description does
not list, or an answer that does not parse into its model (a value of another
type, or fields the model does not know).

    scripts/client_contract.py [--spec FILE] [--hearth BINARY] [--no-build]

Prints one line per flow and backend, then `N passed, N failed`.
"""

import argparse
import datetime
import enum
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
import uuid

import hearth_server

REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client-contract-requirements.txt")
PACKAGE = "hearth_client"
PASSPHRASE = "contract test passphrase"


# --- Tools -----------------------------------------------------------------

def ensure_tools():
    """Installs the pinned generator and the generated client's dependencies if missing."""
    import importlib.metadata

    with open(REQUIREMENTS) as f:
        pins = dict(line.strip().split("==") for line in f if "==" in line)
    try:
        have = all(importlib.metadata.version(name) == version for name, version in pins.items())
        import attrs  # noqa: F401
        import httpx  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        have = False
    if not have:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS], check=True)


def generate(spec, into):
    """Generates the client package under INTO; returns the generator's warnings, one per operation."""
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", spec, "--meta", "none",
         "--output-path", os.path.join(into, PACKAGE)],
        capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isdir(os.path.join(into, PACKAGE)):
        sys.exit(f"openapi-python-client could not generate a client from {spec}:\n"
                 f"{result.stdout}\n{result.stderr}")
    # Each warning is a "WARNING parsing METHOD PATH within TAG." line and, a
    # blank line later, the reason; the schema dumps that follow are dropped.
    warnings = {}
    lines = (result.stdout + result.stderr).splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"WARNING parsing (\w+) (\S+) within", line)
        if m:
            reason = next((x.strip() for x in lines[i + 1:i + 4] if x.strip()), "")
            detail = re.search(r"\((.*)\)", reason)
            reason = detail.group(1) if detail else reason
            warnings.setdefault((m.group(1).upper(), m.group(2)), []).append(reason)
    return warnings


def normalise(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


# --- The generated client, used strictly -----------------------------------

class Gap(Exception):
    """What the description cannot express or the generated client cannot parse."""


class Wrong(Exception):
    """The server answered other than the README says."""


def split_union(annotation):
    parts, depth, cur = [], 0, ""
    for ch in annotation:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


class Contract:
    """The generated package: its operations by method and path, its models, and
    strict builders and checkers around them."""

    def __init__(self, package, warnings):
        from openapi_python_client.strings import PythonIdentifier

        self.ident = lambda wire: str(PythonIdentifier(wire, prefix="field"))
        self.pkg = importlib.import_module(package)
        self.models = importlib.import_module(f"{package}.models")
        self.types = importlib.import_module(f"{package}.types")
        self.errors = importlib.import_module(f"{package}.errors")
        self.warnings = warnings
        # Operations are found by method and path, as the README names them,
        # so operation ids and tags can be renamed without touching the flows.
        self.operations = {}
        api = importlib.import_module(f"{package}.api")
        for info in pkgutil.walk_packages(api.__path__, f"{package}.api."):
            module = importlib.import_module(info.name)
            if not hasattr(module, "sync_detailed"):
                continue
            source = inspect.getsource(module._get_kwargs)
            method = re.search(r'"method": "(\w+)"', source)
            url = re.search(r'"url": f?"([^"]+)"', source)
            if method and url:
                self.operations[(method.group(1).upper(), normalise(url.group(1)))] = (module, url.group(1))

    # Clients.

    def client(self, base, token=None):
        import httpx

        if token is None:
            return self.pkg.Client(base_url=base, raise_on_unexpected_status=True,
                                   timeout=httpx.Timeout(30.0))
        return self.pkg.AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True,
                                            timeout=httpx.Timeout(30.0))

    # Calls.

    def call(self, method, path, client, expected, body=None, **params):
        """Calls METHOD PATH through its generated function; returns the parsed
        answer after checking its status is EXPECTED and it parsed completely."""
        what = f"{method} {path}"
        module, template = self.operations.get((method, normalise(path)), (None, None))
        if module is None:
            raise Gap(f"{what}: the generated client has no such operation")
        signature = inspect.signature(module.sync_detailed)
        # Path parameters by position: the description may name them otherwise.
        for ours, theirs in zip(re.findall(r"\{(\w+)\}", path), re.findall(r"\{(\w+)\}", template)):
            if ours != theirs and ours in params:
                params[theirs] = params.pop(ours)
        kwargs = {}
        for wire, value in params.items():
            name = self.ident(wire)
            if name not in signature.parameters:
                raise Gap(f"{what}: no parameter `{wire}`")
            kwargs[name] = value
        if body is not None:
            if "body" not in signature.parameters:
                raise Gap(f"{what}: the description has no request body")
            kwargs["body"] = self.build(signature.parameters["body"].annotation, body, f"{what} body")
        try:
            response = module.sync_detailed(client=client, **kwargs)
        except self.errors.UnexpectedStatus as e:
            note = "; ".join(self.warnings.get((method, path), []))
            raise Gap(f"{what} answered {e.status_code}, which the generated client does not know"
                      + (f" (generator: {note})" if note else " (not in the description)")
                      + f": {e.content[:120].decode(errors='replace')}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise Gap(f"{what}: the answer does not parse into its model: {e!r}") from None
        status = int(response.status_code)
        if status != expected:
            raise Wrong(f"{what}: expected {expected}, got {status}: "
                        f"{response.content[:300].decode(errors='replace')}")
        parsed = response.parsed
        if response.content:
            if parsed is None:
                raise Gap(f"{what}: the {status} answer has no model in the description")
            self.check(parsed, f"{what} answer")
            if not isinstance(parsed, (str, bytes)):
                self.undocumented(json.loads(response.content), parsed.to_dict(), f"{what} answer")
        return parsed

    # Request bodies: wire JSON turned into the generated models, field by field.

    def resolve(self, name):
        name = name.strip().strip("'\"")
        return getattr(self.models, name, None)

    def build(self, annotation, value, where):
        if not isinstance(annotation, str):
            # A class, or a union of classes: their bare names, as in the models' annotations.
            annotation = re.sub(r"<class '([\w.]+)'>", r"\1", getattr(annotation, "__name__", None) or str(annotation))
            annotation = re.sub(r"\b[\w]+(?:\.[\w]+)*\.(\w+)", r"\1", annotation)
        alternatives = split_union(annotation)
        if isinstance(value, dict):
            candidates = [c for c in map(self.resolve, alternatives)
                          if inspect.isclass(c) and hasattr(c, "__attrs_attrs__")]
            if not candidates:
                raise Gap(f"{where} is untyped in the description ({annotation}): no model carries "
                          f"{sorted(value)}")
            reasons = []
            for model in candidates:
                try:
                    return self.instantiate(model, value, where)
                except Gap as e:
                    reasons.append(str(e))
            raise Gap(" / ".join(reasons))
        if isinstance(value, list):
            lists = [a for a in alternatives if a.startswith("list[")]
            if not lists:
                raise Gap(f"{where} is not a list in the description ({annotation})")
            inner = lists[0][len("list["):-1]
            built, gaps = [], []
            for i, v in enumerate(value):
                try:
                    built.append(self.build(inner, v, f"{where}[{i}]"))
                except Gap as e:
                    gaps.append(str(e))
            if gaps:
                raise Gap("; ".join(gaps))
            return built
        for alternative in alternatives:
            cls = self.resolve(alternative)
            if inspect.isclass(cls) and issubclass(cls, enum.Enum):
                try:
                    return cls(value)
                except ValueError:
                    continue
        if isinstance(value, uuid.UUID) and "UUID" not in alternatives and "str" in alternatives:
            value = str(value)
        if not self.conforms(value, annotation, where):
            raise Gap(f"{where}: {value!r} does not fit the description's type `{annotation}`")
        return value

    def instantiate(self, model, data, where):
        import attrs

        fields = {a.name: a for a in attrs.fields(model) if a.init}
        kwargs, unknown, gaps = {}, [], []
        for wire, value in data.items():
            name = self.ident(wire)
            if name not in fields:
                unknown.append(f"`{wire}`")
                continue
            try:
                kwargs[name] = self.build(fields[name].type, value, f"{where}.{wire}")
            except Gap as e:
                gaps.append(str(e))
        missing = [f"`{n}`" for n, a in fields.items() if a.default is attrs.NOTHING and n not in data
                   and n not in kwargs]
        problems = []
        if unknown:
            problems.append(f"has no field {', '.join(unknown)}")
        if missing:
            problems.append(f"requires {', '.join(missing)}, which the README's body leaves out")
        if problems:
            gaps.insert(0, f"{where}: {model.__name__} {' and '.join(problems)}")
        if gaps:
            raise Gap("; ".join(gaps))
        return model(**kwargs)

    # Answers: every parsed value must have the type its model declares.

    def conforms(self, value, annotation, where):
        for alternative in split_union(annotation):
            if alternative == "Any":
                return True
            if alternative == "None" and value is None:
                return True
            if alternative == "Unset" and isinstance(value, self.types.Unset):
                return True
            simple = {"str": str, "bool": bool, "UUID": uuid.UUID,
                      "datetime.datetime": datetime.datetime, "datetime.date": datetime.date}
            if alternative in simple and isinstance(value, simple[alternative]):
                return True
            if alternative == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
            if alternative == "int" and isinstance(value, int) and not isinstance(value, bool):
                return True
            if alternative.startswith("list[") and isinstance(value, list):
                inner = alternative[len("list["):-1]
                if all(self.conforms(v, inner, f"{where}[{i}]") for i, v in enumerate(value)):
                    return True
            if alternative.startswith("dict[") and isinstance(value, dict):
                inner = alternative[len("dict["):-1].split(",", 1)[1]
                if all(self.conforms(v, inner, f"{where}.{k}") for k, v in value.items()):
                    return True
            cls = self.resolve(alternative)
            if inspect.isclass(cls) and isinstance(value, cls):
                self.check(value, where)
                return True
        return False

    def check(self, obj, where):
        if not hasattr(type(obj), "__attrs_attrs__"):
            return
        import attrs

        declared = [a.name for a in attrs.fields(type(obj)) if a.name != "additional_properties"]
        extra = sorted(getattr(obj, "additional_properties", None) or {})
        if declared and extra:
            raise Gap(f"{where}: field(s) {', '.join(f'`{e}`' for e in extra)} are not in "
                      f"{type(obj).__name__} in the description")
        for a in attrs.fields(type(obj)):
            value = getattr(obj, a.name)
            if a.name == "additional_properties":
                continue
            if not self.conforms(value, a.type, f"{where}.{a.name}"):
                raise Gap(f"{where}: `{a.name}` is {type(value).__name__} {json.dumps(value, default=str)[:80]}, "
                          f"but {type(obj).__name__} declares `{a.type}`")

    def undocumented(self, raw, parsed, where):
        """Fields in the answer that its model dropped."""
        if isinstance(raw, dict) and isinstance(parsed, dict):
            dropped = sorted(set(raw) - set(parsed))
            if dropped:
                raise Gap(f"{where}: field(s) {', '.join(f'`{d}`' for d in dropped)} are not in the description")
            for key in raw:
                self.undocumented(raw[key], parsed[key], f"{where}.{key}")
        elif isinstance(raw, list) and isinstance(parsed, list):
            for i, (r, p) in enumerate(zip(raw, parsed)):
                self.undocumented(r, p, f"{where}[{i}]")

    # Reading parsed answers by their wire names.

    def get(self, obj, wire, what=None):
        """A field of a parsed model (WHAT names it in messages); None when absent."""
        name = self.ident(wire)
        what = what or type(obj).__name__
        if not hasattr(type(obj), "__attrs_attrs__"):
            raise Gap(f"{what} is untyped in the description, so `{wire}` cannot be read from it "
                      f"(parsed as {type(obj).__name__} {json.dumps(obj, default=str)[:60]}…)")
        declared = {a.name for a in type(obj).__attrs_attrs__} - {"additional_properties"}
        if not declared:
            raise Gap(f"{what} is a free-form object in the description ({type(obj).__name__}), "
                      f"so it has no field `{wire}`")
        if name not in declared:
            raise Gap(f"{what} has no field `{wire}`")
        value = getattr(obj, name)
        if isinstance(value, self.types.Unset):
            return None
        return value.value if isinstance(value, enum.Enum) else value

    def entry(self, obj, key):
        """An entry of a parsed map model (`additionalProperties`)."""
        if not hasattr(obj, "additional_properties"):
            raise Gap(f"{type(obj).__name__} is not a map")
        value = obj.additional_properties.get(key)
        return value.value if isinstance(value, enum.Enum) else value


def expect(condition, message):
    if not condition:
        raise Wrong(message)


# --- The README's flows ----------------------------------------------------

def new_id():
    return uuid.uuid4()


def step(start, value, minutes=5):
    s = datetime.datetime.fromisoformat(start)
    return {"sync_id": str(new_id()), "type": "step_count", "start": s.isoformat(),
            "end": (s + datetime.timedelta(minutes=minutes)).isoformat(), "value": value, "unit": "count"}


class Flows:
    def __init__(self, contract, server):
        self.c = contract
        self.server = server
        self.public = contract.client(server.base)
        self.owner = None
        self.state = {}

    def need(self, key, flow):
        if key not in self.state:
            raise Wrong(f"needs the `{flow}` flow, which failed")
        return self.state[key]

    def add(self, client, samples, expect_status=201):
        outcome = self.c.call("POST", "/v1/samples", client, expect_status, body={"samples": samples})
        ids = [str(i) for i in self.c.get(outcome, "ids")]
        expect(len(ids) == len(samples), f"write answered {len(ids)} ids for {len(samples)} samples")
        return outcome, ids

    def read(self, sample_id, client=None):
        return self.c.call("GET", "/v1/samples/{id}", client or self.owner, 200, id=sample_id)

    def setup_unlock(self):
        c, get = self.c, self.c.get
        health = c.call("GET", "/healthz", self.public, 200)
        expect(get(health, "status") == "ok", f"healthz: {get(health, 'status')}")
        ready = c.call("GET", "/readyz", self.public, 503)
        expect(get(ready, "state") == "uninitialised", f"a new store is {get(ready, 'state')}")
        session = c.call("POST", "/v1/setup", self.public, 200,
                         body={"setup_code": self.server.setup_code, "passphrase": PASSPHRASE})
        expect(get(session, "state") == "unlocked" and get(session, "token"), "setup did not unlock")
        self.owner = c.client(self.server.base, get(session, "token"))
        c.call("POST", "/v1/lock", self.owner, 204)
        ready = c.call("GET", "/readyz", self.public, 503)
        expect(get(ready, "state") == "locked", f"after lock the store is {get(ready, 'state')}")
        session = c.call("POST", "/v1/unlock", self.public, 200, body={"passphrase": PASSPHRASE})
        expect(get(session, "state") == "unlocked", "unlock did not unlock")
        self.owner = c.client(self.server.base, get(session, "token"))
        ready = c.call("GET", "/readyz", self.public, 200)
        expect(get(ready, "state") == "unlocked", f"after unlock the store is {get(ready, 'state')}")
        self.state["owner"] = self.owner

    def register_app(self):
        c, get = self.c, self.c.get
        self.need("owner", "setup/unlock")
        body = {"name": "Step Plotter", "description": "Charts of your walking",
                "purpose": "Shows your daily steps and records your walks.",
                "privacy_policy_url": "https://plotter.example/privacy",
                "redirect_uris": ["http://127.0.0.1/callback"], "client_type": "public"}
        app = c.call("POST", "/v1/apps", self.owner, 201, body=body)
        app_id = get(app, "id")
        expect(isinstance(app_id, str) and app_id.startswith("app_"), f"app id {app_id!r}")
        expect(get(app, "client_type") == "public" and get(app, "client_secret") is None,
               "a public client got a secret or another type")
        expect(get(app, "redirect_uris") == body["redirect_uris"], f"redirect_uris {get(app, 'redirect_uris')}")
        again = c.call("GET", "/v1/apps/{id}", self.owner, 200, id=app_id)
        expect(get(again, "name") == "Step Plotter" and get(again, "purpose") == body["purpose"],
               "the app reads back with other fields")
        listed = c.call("GET", "/v1/apps", self.owner, 200)
        expect(app_id in [get(a, "id") for a in get(listed, "apps")], "the app is not listed")
        self.state["app"] = app_id

    def mint_credential(self):
        c, get = self.c, self.c.get
        app_id = self.need("app", "register an app")
        credential = c.call("POST", "/v1/apps/{id}/credentials", self.owner, 201, id=app_id,
                            body={"name": "bathroom scale", "write": ["body_mass"]})
        token = get(credential, "token")
        expect(token, "the minted credential carries no token")
        expect("write:body_mass" in get(credential, "scope").split(), f"scope {get(credential, 'scope')!r}")
        scale = c.client(self.server.base, token)
        status = c.call("GET", "/v1/authorization/status", scale, 200, types="body_mass,step_count")
        write = get(status, "write")
        expect(c.entry(write, "body_mass") == "authorized", f"body_mass: {c.entry(write, 'body_mass')}")
        expect(c.entry(write, "step_count") != "authorized", "step_count is authorized without a grant")
        _, (weight,) = self.add(scale, [{"type": "body_mass", "start": "2026-01-03T07:00:00+01:00",
                                         "end": "2026-01-03T07:00:00+01:00", "value": 71.5, "unit": "kg"}])
        sample = self.read(weight, scale)
        expect(get(sample, "source") == app_id, f"the scale's sample has source {get(sample, 'source')!r}")
        expect(abs(get(sample, "value") - 71.5) < 1e-9 and get(sample, "unit") == "kg", "weight reads back changed")
        refused = c.call("POST", "/v1/samples", scale, 403, body={"samples": [step("2026-01-03T08:00:00+00:00", 5)]})
        expect(get(refused, "code") == "write_not_authorized", f"refused write: {get(refused, 'code')}")
        listed = c.call("GET", "/v1/apps/{id}/credentials", self.owner, 200, id=app_id)
        expect([get(x, "name") for x in get(listed, "credentials")] == ["bathroom scale"], "credential not listed")

    def plain_sample(self):
        get = self.c.get
        self.need("owner", "setup/unlock")
        readme = {"type": "step_count", "start": "2026-01-01T10:00:00+01:00",
                  "end": "2026-01-01T10:01:00+01:00", "value": 120, "unit": "count", "sync_id": "walk-2026-01-01"}
        outcome, (sample_id,) = self.add(self.owner, [readme])
        expect(get(outcome, "added") == 1, f"added {get(outcome, 'added')}")
        sample = self.read(sample_id)
        expect(get(sample, "type") == "step_count" and get(sample, "value") == 120 and get(sample, "unit") == "count",
               "the sample reads back changed")
        expect(get(sample, "start") == readme["start"], f"start {get(sample, 'start')!r} lost its offset")
        expect(get(sample, "source") == "owner", f"source {get(sample, 'source')!r}")
        expect(get(sample, "sync_id") == readme["sync_id"], f"sync_id {get(sample, 'sync_id')!r}")
        outcome, ids = self.add(self.owner, [readme], expect_status=200)
        expect(get(outcome, "unchanged") == 1 and get(outcome, "added") == 0, "resending the sample was not a no-op")
        expect(ids == [sample_id], f"the retry answered {ids}, not the stored id")
        # A higher sync_version replaces the stored sample under a new id.
        weight = {"type": "body_mass", "start": "2026-01-06T07:00:00+01:00", "end": "2026-01-06T07:00:00+01:00",
                  "value": 70, "unit": "kg", "sync_id": "weigh-in-6"}
        _, (first,) = self.add(self.owner, [weight])
        outcome, (second,) = self.add(self.owner, [dict(weight, value=70.5, sync_version=1)])
        expect(get(outcome, "replaced") == 1 and second != first, "a higher sync_version did not replace")
        self.c.call("GET", "/v1/samples/{id}", self.owner, 404, id=first)
        expect(get(self.read(second), "sync_version") == 1, "the replacement reads back without its version")
        conflict = self.c.call("POST", "/v1/samples", self.owner, 409,
                               body={"samples": [dict(weight, value=71)]})
        expect(get(conflict, "code") == "sync_conflict", f"a stale version: {get(conflict, 'code')}")
        self.state["plain"] = sample_id

    def device_sample(self):
        c, get = self.c, self.c.get
        self.need("owner", "setup/unlock")
        device = {"name": "Watch", "model": "Series 9", "manufacturer": "Apple", "kind": "watch"}
        _, (sample_id,) = self.add(self.owner, [{
            "type": "heart_rate", "start": "2026-01-01T10:00:00+01:00", "end": "2026-01-01T10:00:00+01:00",
            "value": 61, "unit": "count/min", "device": device}])
        read = get(self.read(sample_id), "device")
        expect(read is not None, "the sample reads back without its device")
        expect({k: get(read, k) for k in device} == device, f"device reads back as {read}")
        page = c.call("GET", "/v1/samples", self.owner, 200, type="heart_rate", device="Watch")
        expect([str(get(s, "id")) for s in get(page, "samples")] == [sample_id], "device= does not find the sample")
        sources = c.call("GET", "/v1/sources", self.owner, 200, type="heart_rate")
        named = [(get(s, "source"), get(get(s, "device"), "name") if get(s, "device") else None)
                 for s in get(sources, "sources")]
        expect(("owner", "Watch") in named, f"sources: {named}")

    def correlation(self):
        c, get = self.c, self.c.get
        self.need("owner", "setup/unlock")
        _, (bp,) = self.add(self.owner, [{
            "type": "blood_pressure", "start": "2026-01-01T08:00:00+01:00", "end": "2026-01-01T08:00:00+01:00",
            "members": [{"type": "blood_pressure_systolic", "value": 121, "unit": "mmHg"},
                        {"type": "blood_pressure_diastolic", "value": 79, "unit": "mmHg"}]}])
        members = get(self.read(bp), "members") or []
        got = {get(m, "type", "a member in Sample.members"): (get(m, "value"), get(m, "unit")) for m in members}
        expect(got == {"blood_pressure_systolic": (121, "mmHg"), "blood_pressure_diastolic": (79, "mmHg")},
               f"the correlation reads back with members {got}")
        page = c.call("GET", "/v1/samples", self.owner, 200, type="blood_pressure_systolic")
        expect([get(s, "value") for s in get(page, "samples")] == [121], "the systolic member is not its own sample")

    def workout_route(self):
        c, get = self.c, self.c.get
        self.need("owner", "setup/unlock")
        start, end = "2026-01-04T07:00:00+01:00", "2026-01-04T07:30:00+01:00"
        points = [{"time": "2026-01-04T07:00:00+01:00", "lat": 52.52, "lon": 13.405, "alt": 34.0},
                  {"time": "2026-01-04T07:15:00+01:00", "lat": 52.53, "lon": 13.41},
                  {"time": "2026-01-04T07:30:00+01:00", "lat": 52.54, "lon": 13.42, "alt": 36.5}]
        # A route names a stored workout by the id its write answered.
        _, (workout,) = self.add(self.owner, [
            {"type": "workout", "start": start, "end": end, "activity": "running",
             "energy": {"value": 300, "unit": "kcal"}, "distance": {"value": 5, "unit": "km"}}])
        workout = uuid.UUID(workout)
        _, (_, route) = self.add(self.owner, [
            {"type": "heart_rate", "start": "2026-01-04T07:10:00+01:00", "end": "2026-01-04T07:10:00+01:00",
             "value": 150, "unit": "count/min"},
            {"type": "workout_route", "start": start, "end": end, "workout": workout, "route": points}])
        w = self.read(str(workout))
        expect(get(w, "activity") == "running" and get(w, "duration_s") == 1800,
               f"workout reads back as {get(w, 'activity')}, {get(w, 'duration_s')} s")
        energy, distance = get(w, "energy"), get(w, "distance")
        expect(energy is not None and distance is not None, "the workout reads back without energy or distance")
        expect((get(energy, "value", "Sample.energy"), get(energy, "unit")) == (300, "kcal"),
               "energy reads back changed")
        expect((get(distance, "value", "Sample.distance"), get(distance, "unit")) == (5000, "m"),
               "distance reads back changed")
        r = self.read(route)
        expect(str(get(r, "workout")) == str(workout), f"the route names workout {get(r, 'workout')!r}")
        read_points = [(get(p, "time", "a point in Sample.route"), get(p, "lat"), get(p, "lon"), get(p, "alt"))
                       for p in get(r, "route") or []]
        expect(read_points == [(p["time"], p["lat"], p["lon"], p.get("alt")) for p in points],
               f"the route reads back as {read_points}")
        during = c.call("GET", "/v1/workouts/{id}/statistics", self.owner, 200, id=workout, type="heart_rate")
        stats = get(during, "statistics")
        expect(get(during, "activity") == "running" and stats is not None, "no statistics during the workout")
        expect(get(stats, "count") == 1 and get(stats, "avg") == 150, "heart rate during the workout is wrong")

    def steps_day(self):
        """Three step samples on 2 January: 100 and 200 in the 09:00 hour, 300 at 10:15."""
        if "steps" not in self.state:
            self.need("owner", "setup/unlock")
            samples = [step("2026-01-02T09:00:00+00:00", 100), step("2026-01-02T09:30:00+00:00", 200),
                       step("2026-01-02T10:15:00+00:00", 300)]
            _, ids = self.add(self.owner, samples)
            self.state["steps"] = ids
        return self.state["steps"]

    def list_samples(self):
        c, get = self.c, self.c.get
        ids = self.steps_day()
        seen, cursor, pages = [], None, 0
        while True:
            query = {"type": "step_count", "start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z", "limit": 2}
            if cursor:
                query["cursor"] = cursor
            page = c.call("GET", "/v1/samples", self.owner, 200, **query)
            seen += [(str(get(s, "id")), get(s, "value")) for s in get(page, "samples")]
            pages += 1
            cursor = get(page, "next_cursor")
            if not cursor or pages > 3:
                break
        expect(seen == list(zip(ids, [100, 200, 300])) and pages == 2, f"pages of 2 gave {seen} in {pages} pages")
        latest = c.call("GET", "/v1/samples", self.owner, 200, type="step_count", most_recent="true",
                        end="2026-01-03T00:00:00Z")
        expect([str(get(s, "id")) for s in get(latest, "samples")] == [ids[2]], "most_recent is not the latest")
        problem = c.call("GET", "/v1/samples", self.owner, 400, type="step_count", unit="kg")
        expect(get(problem, "code") == "invalid_input" and get(problem, "status") == 400,
               f"a unit that cannot express the type: {get(problem, 'code')}")

    def statistics(self):
        c, get = self.c, self.c.get
        self.steps_day()
        stats = c.call("GET", "/v1/statistics", self.owner, 200, type="step_count",
                       start="2026-01-02T00:00:00Z", end="2026-01-03T00:00:00Z")
        expect((get(stats, "count"), get(stats, "sum"), get(stats, "unit")) == (3, 600, "count"),
               f"statistics: count {get(stats, 'count')}, sum {get(stats, 'sum')}")
        hr = c.call("GET", "/v1/statistics", self.owner, 200, type="heart_rate", unit="count/s",
                    start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z")
        if get(hr, "count"):
            expect(abs(get(hr, "max") - 61 / 60) < 1e-9, f"heart rate in count/s: {get(hr, 'max')}")

    def buckets(self):
        c, get = self.c, self.c.get
        self.steps_day()
        collection = c.call("GET", "/v1/statistics/buckets", self.owner, 200, type="step_count",
                            start="2026-01-02T09:00:00Z", end="2026-01-02T12:00:00Z", interval="PT1H", tz="UTC")
        buckets = get(collection, "buckets") or []
        sums = [get(b, "sum") or 0 for b in buckets]
        expect(sums == [300, 300, 0], f"hourly buckets: {sums}")
        expect(get(buckets[0], "start").startswith("2026-01-02T09:00:00"), f"first bucket {get(buckets[0], 'start')}")
        days = c.call("GET", "/v1/statistics/buckets", self.owner, 200, type="step_count",
                      start="2026-01-01T00:00:00+01:00", end="2026-01-03T00:00:00+01:00",
                      interval="P1D", tz="Europe/Berlin")
        first_day = 120 if "plain" in self.state else 0  # the README's sample, at 10:00 on 1 January
        expect([get(b, "sum") or 0 for b in get(days, "buckets") or []] == [first_day, 600],
               f"daily buckets in Berlin: {[get(b, 'sum') for b in get(days, 'buckets') or []]}")

    def changes(self):
        c, get = self.c, self.c.get
        ids = self.steps_day()
        first = c.call("GET", "/v1/changes", self.owner, 200, types="step_count")
        added = [str(get(s, "id")) for s in get(first, "added")]
        expect(set(ids) <= set(added) and not get(first, "has_more"), f"changes from the start: {added}")
        anchor = get(first, "anchor")
        _, (new,) = self.add(self.owner, [step("2026-01-05T09:00:00+00:00", 42)])
        c.call("DELETE", "/v1/samples/{id}", self.owner, 204, id=ids[0])
        later = c.call("GET", "/v1/changes", self.owner, 200, types="step_count", anchor=anchor)
        expect([str(get(s, "id")) for s in get(later, "added")] == [new], f"added after the anchor: {later}")
        deleted = [(str(get(d, "id")), get(d, "type")) for d in get(later, "deleted")]
        expect(deleted == [(ids[0], "step_count")], f"deleted after the anchor: {deleted}")


FLOWS = [
    ("setup/unlock", Flows.setup_unlock),
    ("register an app", Flows.register_app),
    ("mint a credential", Flows.mint_credential),
    ("plain sample", Flows.plain_sample),
    ("sample with a device", Flows.device_sample),
    ("blood-pressure correlation", Flows.correlation),
    ("workout and its route", Flows.workout_route),
    ("list", Flows.list_samples),
    ("statistics", Flows.statistics),
    ("buckets", Flows.buckets),
    ("changes", Flows.changes),
]


def run(contract, label, database_url, hearth):
    passed = failed = 0
    with hearth_server.running(database_url, hearth) as server:
        flows = Flows(contract, server)
        for name, flow in FLOWS:
            started = time.time()
            try:
                flow(flows)
            except Gap as e:
                failed += 1
                print(f"{label:8} FAIL  {name}: contract gap: {e}", flush=True)
                continue
            except Wrong as e:
                failed += 1
                print(f"{label:8} FAIL  {name}: {e}", flush=True)
                continue
            except Exception as e:  # a crash in one flow still leaves the others to run
                failed += 1
                print(f"{label:8} FAIL  {name}: {type(e).__name__}: {e}", flush=True)
                continue
            passed += 1
            print(f"{label:8} ok    {name} ({time.time() - started:.1f} s)", flush=True)
    return passed, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=hearth_server.SPEC, help="the OpenAPI description to generate from")
    parser.add_argument("--hearth", help="the server binary (default: build and use the debug binary)")
    parser.add_argument("--no-build", action="store_true", help="use the debug binary as it is")
    args = parser.parse_args()
    ensure_tools()
    hearth = args.hearth or (hearth_server.binary() if args.no_build else hearth_server.build())
    with tempfile.TemporaryDirectory(prefix="hearth-client-") as into:
        started = time.time()
        warnings = generate(os.path.abspath(args.spec), into)
        print(f"generated a client from {os.path.relpath(os.path.abspath(args.spec))} "
              f"in {time.time() - started:.1f} s", flush=True)
        for (method, path), reasons in sorted(warnings.items()):
            for reason in reasons:
                print(f"note: the generated client leaves out an answer of {method} {path}: {reason}")
        sys.path.insert(0, into)
        contract = Contract(PACKAGE, warnings)
        passed = failed = 0
        for label, database_url in hearth_server.backends("hearth_contract"):
            p, f = run(contract, label, database_url, hearth)
            passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
