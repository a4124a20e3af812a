#!/usr/bin/env python3
"""Validates research export output: every NDJSON line as a FHIR R4B
resource (fhir.resources, the version .ci/run pins), and a Bulk Data
manifest against the fields the specification lists.

    validate_fhir_ndjson.py [--manifest manifest.json] file.ndjson...

Prints one line per problem and exits 1 if there was any.
"""

import json
import sys

from fhir.resources.R4B import get_fhir_model_class

MANIFEST_REQUIRED = {"transactionTime", "request", "requiresAccessToken", "output", "error"}
MANIFEST_ALLOWED = MANIFEST_REQUIRED | {"deleted", "extension"}
FILE_REQUIRED = {"type", "url"}
FILE_ALLOWED = FILE_REQUIRED | {"count", "extension"}


def check_manifest(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    keys = set(manifest)
    for missing in sorted(MANIFEST_REQUIRED - keys):
        problems.append(f"manifest: missing {missing}")
    for extra in sorted(keys - MANIFEST_ALLOWED):
        problems.append(f"manifest: unknown field {extra}")
    if not isinstance(manifest.get("transactionTime"), str):
        problems.append("manifest: transactionTime is not an instant")
    if manifest.get("requiresAccessToken") is not True:
        problems.append("manifest: requiresAccessToken is not true")
    for part in ("output", "error", "deleted"):
        for i, item in enumerate(manifest.get(part, []) or []):
            ikeys = set(item)
            for missing in sorted(FILE_REQUIRED - ikeys):
                problems.append(f"manifest: {part}[{i}] missing {missing}")
            for extra in sorted(ikeys - FILE_ALLOWED):
                problems.append(f"manifest: {part}[{i}] unknown field {extra}")
            if "count" in item and not isinstance(item["count"], int):
                problems.append(f"manifest: {part}[{i}].count is not a number")
    return problems


def check_ndjson(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                problems.append(f"{path}:{n}: empty line")
                continue
            try:
                obj = json.loads(line)
                model = get_fhir_model_class(obj["resourceType"])
                model.model_validate(obj)
            except Exception as e:  # every failure is a finding
                problems.append(f"{path}:{n}: {type(e).__name__}: {e}")
    return problems


def main(argv):
    problems = []
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--manifest":
            problems += check_manifest(argv[i + 1])
            i += 2
        else:
            files.append(argv[i])
            i += 1
    for path in files:
        problems += check_ndjson(path)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
