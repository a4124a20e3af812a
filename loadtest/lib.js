// Shared setup and data generation for the k6 scripts in this directory.
// The Rust load generator (services/loadgen, `hearth-loadgen`) runs the same
// scenarios where k6 is not installed; keep the two in step.
import http from 'k6/http';
import { check, fail } from 'k6';

/** Base URL of the server under test. */
export const BASE = (__ENV.HEARTH_URL || 'http://127.0.0.1:7380').replace(/\/+$/, '');

/** Generated data lies in 2025 (UTC); queries pick ranges inside it. */
export const YEAR_START = Date.UTC(2025, 0, 1) / 1000;
export const YEAR_SECS = 365 * 86400;

/** What the simulated apps write, with plausible value ranges. */
export const KINDS = {
  steps: { type: 'step_count', unit: 'count', min: 0, max: 180, span: 60, integer: true },
  heartRate: { type: 'heart_rate', unit: 'count/min', min: 48, max: 170, span: 0, integer: true },
  energy: { type: 'active_energy_burned', unit: 'kcal', min: 0, max: 12, span: 60, integer: false },
  distance: { type: 'distance_walking_running', unit: 'm', min: 0, max: 140, span: 60, integer: false },
  bodyMass: { type: 'body_mass', unit: 'kg', min: 68, max: 74, span: 0, integer: false },
  glucose: { type: 'blood_glucose', unit: 'mg/dL', min: 70, max: 160, span: 0, integer: true },
};
export const PHONE_KINDS = [KINDS.steps, KINDS.heartRate, KINDS.energy, KINDS.distance];
export const ALL_KINDS = Object.values(KINDS);

/** Error rate and latency limits every script shares; scripts add their own. */
export const BASE_THRESHOLDS = {
  http_req_failed: ['rate<0.001'],
  checks: ['rate>0.999'],
};

/** p95/p99 limits (milliseconds) for requests tagged `name`. */
export function latency(name, p95, p99) {
  return { [`http_req_duration{name:${name}}`]: [`p(95)<${p95}`, `p(99)<${p99}`] };
}

export function randInt(min, max) {
  return Math.floor(Math.random() * (max - min + 1)) + min;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

/** A version 4 UUID (random enough for load-test sync identifiers). */
export function uuid() {
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

function pad(n) {
  return String(n).padStart(2, '0');
}

/** RFC 3339 with a fixed +01:00 offset, as a phone in Central Europe sends. */
export function time(secs) {
  const d = new Date((secs + 3600) * 1000);
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}+01:00`
  );
}

export function randomTime() {
  return YEAR_START + randInt(0, YEAR_SECS - 1);
}

/**
 * `n` consecutive samples of `kind` from `clock` on, each with a sync_id so
 * that sending the batch again is a no-op. Returns the request body (a JSON
 * string) and the advanced clock.
 */
export function batch(kind, n, clock) {
  const step = Math.max(kind.span, 60);
  const samples = [];
  for (let i = 0; i < n; i++) {
    if (clock + step >= YEAR_START + YEAR_SECS) clock = YEAR_START;
    let value = kind.min + Math.random() * (kind.max - kind.min);
    if (kind.integer) value = Math.round(value);
    const s = {
      sync_id: uuid(),
      type: kind.type,
      start: time(clock),
      end: time(clock + kind.span),
      value,
      unit: kind.unit,
    };
    if (Math.random() < 0.05) s.metadata = { device: 'k6', motion: Math.random() < 0.5 };
    samples.push(s);
    clock += step;
  }
  return { body: JSON.stringify({ samples }), clock };
}

/** A day, week, month or year inside the generated year. */
export function rangeQuery() {
  const len = pick([1, 7, 30, 365]) * 86400;
  const start = YEAR_START + randInt(0, YEAR_SECS - len);
  return { start: time(start), end: time(start + len) };
}

export function query(params) {
  return Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
}

/** Request parameters with the owner token and a `name` tag for thresholds. */
export function params(token, name) {
  return {
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    tags: { name },
    redirects: 0,
  };
}

/**
 * Setup shared by every script: an owner token from HEARTH_TOKEN, or by
 * unlocking with HEARTH_PASSPHRASE (`POST /v1/unlock`).
 */
export function ownerToken() {
  if (__ENV.HEARTH_TOKEN) return __ENV.HEARTH_TOKEN;
  const passphrase = __ENV.HEARTH_PASSPHRASE;
  if (!passphrase) fail('set HEARTH_PASSPHRASE (or HEARTH_TOKEN) to the store passphrase');
  const res = http.post(`${BASE}/v1/unlock`, JSON.stringify({ passphrase }), {
    headers: { 'content-type': 'application/json' },
    tags: { name: 'unlock' },
    redirects: 0,
  });
  if (res.status !== 200) fail(`unlock failed: ${res.status} ${res.body}`);
  return res.json('token');
}

/** POST /v1/samples; true when acknowledged. */
export function write(token, name, body) {
  const res = http.post(`${BASE}/v1/samples`, body, params(token, name));
  return check(res, { [`${name} acknowledged`]: (r) => r.status === 201 || r.status === 200 });
}

/**
 * Writes `samples` samples spread over the generated year in batches of 1000
 * so reads find data. Returns up to `keep` of the ids Hearth gave them.
 */
export function seed(token, samples, keep = 2000) {
  const ids = [];
  for (let b = 0; b * 1000 < samples; b++) {
    const n = Math.min(1000, samples - b * 1000);
    const { body } = batch(ALL_KINDS[b % ALL_KINDS.length], n, randomTime());
    const res = http.post(`${BASE}/v1/samples`, body, params(token, 'seed-write'));
    if (res.status !== 201) fail(`seeding failed: ${res.status}`);
    const written = res.json('ids');
    for (let i = 0; i < written.length && ids.length < keep; i += 10) ids.push(written[i]);
  }
  return ids;
}

/** GET /v1/statistics over a random range of a random type. */
export function statistics(token) {
  const kind = pick(ALL_KINDS);
  const { start, end } = rangeQuery();
  const res = http.get(
    `${BASE}/v1/statistics?${query({ type: kind.type, start, end })}`,
    params(token, 'statistics'),
  );
  check(res, { 'statistics 200': (r) => r.status === 200 });
}

/** GET /v1/samples, following next_cursor for up to five pages. */
export function browse(token) {
  const kind = pick(PHONE_KINDS);
  const { start, end } = rangeQuery();
  const limit = pick([50, 100, 250]);
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const q = { type: kind.type, start, end, limit };
    if (cursor) q.cursor = cursor;
    const res = http.get(`${BASE}/v1/samples?${query(q)}`, params(token, 'list-page'));
    if (!check(res, { 'list-page 200': (r) => r.status === 200 })) return;
    cursor = res.json('next_cursor');
    if (!cursor) return;
  }
}

/** GET /v1/samples/{id} of a sample known to exist. */
export function lookup(token, ids) {
  if (ids.length === 0) return statistics(token);
  const res = http.get(`${BASE}/v1/samples/${pick(ids)}`, params(token, 'get-by-id'));
  check(res, { 'get-by-id 200': (r) => r.status === 200 });
}
