#!/usr/bin/python3
"""OTLP/HTTP receiver standing in for the OpenTelemetry Collector.

Reads the collector configuration (receivers.otlp.protocols.http, the
debug exporter's verbosity, the health_check extension) and logs each
export request as the collector's debug exporter does at basic verbosity:

    Traces  {"kind": "exporter", "data_type": "traces", "name": "debug", "resource spans": 1, "spans": 4}

Requests are OTLP protobuf or JSON, optionally gzip-compressed.
"""

import argparse
import gzip
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml


def log(level, message, fields=None):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    extra = "\t" + json.dumps(fields, separators=(", ", ": ")) if fields else ""
    print(f"{stamp}Z\t{level}\t{message}{extra}", flush=True)


def fields(buf):
    """The (number, value) pairs of one protobuf message; length-delimited
    values as bytes, varints as ints, fixed-width ones skipped."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = None, i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def children(buf, number):
    return [v for k, v in fields(buf) if k == number]


# Per signal: the request's resource field, the scope field inside it, the
# item field inside that, and the names the debug exporter logs.
SIGNALS = {
    "/v1/traces": ("traces", "Traces", "resource spans", "spans", "resourceSpans", "scopeSpans", "spans"),
    "/v1/metrics": ("metrics", "Metrics", "resource metrics", "metrics", "resourceMetrics", "scopeMetrics", "metrics"),
    "/v1/logs": ("logs", "Logs", "resource logs", "log records", "resourceLogs", "scopeLogs", "logRecords"),
}


def count(body, content_type, signal):
    _, _, _, _, res_key, scope_key, item_key = signal
    if content_type.startswith("application/json"):
        doc = json.loads(body or b"{}")
        resources = doc.get(res_key, [])
        items = [i for r in resources for s in r.get(scope_key, []) for i in s.get(item_key, [])]
        names = [i.get("name", "") for i in items]
        return len(resources), names
    resources = children(body, 1)
    items = [i for r in resources for s in children(r, 2) for i in children(s, 2)]
    if signal[0] == "logs":
        names = ["" for _ in items]
    else:
        # Span.name is field 5, Metric.name field 1.
        name_field = 5 if signal[0] == "traces" else 1
        names = [next((v.decode("utf-8", "replace") for k, v in fields(i) if k == name_field), "") for i in items]
    return len(resources), names


def handler_for(verbosity, pipelines):
    class Handler(BaseHTTPRequestHandler):
        server_version = "otelcol-stand-in"

        def log_message(self, *args):
            pass

        def do_POST(self):
            signal = SIGNALS.get(self.path)
            if signal is None or signal[0] not in pipelines:
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            content_type = self.headers.get("content-type", "application/x-protobuf")
            try:
                resources, names = count(body, content_type, signal)
            except (ValueError, IndexError, json.JSONDecodeError) as e:
                log("error", "otlp receiver: undecodable request", {"error": str(e)})
                self.send_error(400)
                return
            log("info", signal[1], {
                "kind": "exporter", "data_type": signal[0], "name": "debug",
                signal[2]: resources, signal[3]: len(names),
            })
            if verbosity != "basic":
                for name in names:
                    log("info", f"  {signal[3][:-1]}: {name}")
            reply = b"{}" if content_type.startswith("application/json") else b""
            self.send_response(200)
            self.send_header("content-type", content_type.split(";")[0])
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


class Health(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        reply = b'{"status":"Server available"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def address(endpoint):
    host, _, port = endpoint.rpartition(":")
    return host or "0.0.0.0", int(port)


def main():
    parser = argparse.ArgumentParser(prog="otelcol")
    parser.add_argument("--config", required=True)
    config = yaml.safe_load(open(parser.parse_args().config.removeprefix("file:")))

    pipelines = config["service"]["pipelines"]
    exporters = {e for p in pipelines.values() for e in p.get("exporters", [])}
    if exporters - {"debug"}:
        sys.exit(f"otelcol stand-in: only the debug exporter is available, not {sorted(exporters - {'debug'})}")
    protocols = (config.get("receivers", {}).get("otlp") or {}).get("protocols") or {}
    if "http" not in protocols:
        sys.exit("otelcol stand-in: needs receivers.otlp.protocols.http")
    if "grpc" in protocols:
        log("warn", "otelcol stand-in: OTLP/gRPC is not served, only OTLP/HTTP")
    verbosity = (config.get("exporters", {}).get("debug") or {}).get("verbosity", "basic")
    signals = {name.split("/")[0] for name in pipelines}

    servers = [ThreadingHTTPServer(address((protocols["http"] or {}).get("endpoint", "0.0.0.0:4318")),
                                   handler_for(verbosity, signals))]
    health = (config.get("extensions") or {}).get("health_check")
    if "health_check" in config["service"].get("extensions", []):
        servers.append(ThreadingHTTPServer(address((health or {}).get("endpoint", "0.0.0.0:13133")), Health))
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log("info", "Everything is ready. Begin running and processing data.",
        {"otlp http": "%s:%d" % servers[0].server_address[:2], "pipelines": sorted(pipelines)})
    # As PID 1 in a container, SIGTERM is ignored unless handled.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
