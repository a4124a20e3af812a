// A day in the life: several apps at once, each its own k6 scenario —
// phones syncing batches, a watch writing heart rate, a scale, dashboards,
// a browser paging through lists and an app reading samples by id.
//
//   HEARTH_PASSPHRASE=… k6 run loadtest/mixed-day.js
//   DURATION=10m SCALE=2 k6 run loadtest/mixed-day.js
//
// Observer stream: Hearth has no observer (change notification) endpoint
// yet. When it lands, add an `observers` scenario here that holds one stream
// per app open and checks that writes are delivered (the Rust load
// generator's hook is `scenario::observer_stream_hook`).
import {
  BASE_THRESHOLDS,
  KINDS,
  PHONE_KINDS,
  batch,
  browse,
  latency,
  lookup,
  ownerToken,
  pick,
  randInt,
  randomTime,
  seed,
  statistics,
  write,
} from './lib.js';

const DURATION = __ENV.DURATION || '2m';
const SCALE = Number(__ENV.SCALE || 1);

function vus(exec, n) {
  return { executor: 'constant-vus', exec, vus: Math.max(1, Math.round(n * SCALE)), duration: DURATION };
}

function rate(exec, perSecond) {
  return {
    executor: 'constant-arrival-rate',
    exec,
    rate: Math.max(1, Math.round(perSecond * SCALE)),
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: 4,
    maxVUs: 64,
  };
}

export const options = {
  setupTimeout: '5m',
  scenarios: {
    phones: vus('phone', 2),
    watch: rate('watch', 5),
    scale: rate('scale', 1),
    dashboards: rate('dashboard', 40),
    browser: vus('browser', 2),
    lookups: rate('lookupById', 40),
  },
  thresholds: {
    ...BASE_THRESHOLDS,
    ...latency('write-batch', 500, 1000),
    ...latency('write-small', 250, 500),
    ...latency('write-one', 250, 500),
    ...latency('statistics', 100, 250),
    ...latency('list-page', 100, 250),
    ...latency('get-by-id', 50, 150),
  },
};

export function setup() {
  const token = ownerToken();
  const ids = seed(token, Number(__ENV.SEED_SAMPLES || 5000));
  return { token, ids };
}

let clock = randomTime();

export function phone(data) {
  const generated = batch(pick(PHONE_KINDS), randInt(100, 1000), clock);
  clock = generated.clock;
  write(data.token, 'write-batch', generated.body);
}

export function watch(data) {
  const generated = batch(KINDS.heartRate, randInt(1, 20), clock);
  clock = generated.clock;
  write(data.token, 'write-small', generated.body);
}

export function scale(data) {
  const generated = batch(Math.random() < 0.5 ? KINDS.bodyMass : KINDS.glucose, 1, clock);
  clock = generated.clock;
  write(data.token, 'write-one', generated.body);
}

export function dashboard(data) {
  statistics(data.token);
}

export function browser(data) {
  browse(data.token);
}

export function lookupById(data) {
  lookup(data.token, data.ids);
}
