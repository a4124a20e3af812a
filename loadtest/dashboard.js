// Dashboards: statistics over day, week, month and year ranges, at a fixed
// arrival rate, after seeding the store so the ranges hold data.
//
//   HEARTH_PASSPHRASE=… k6 run loadtest/dashboard.js
//   RATE=200 DURATION=5m SEED_SAMPLES=50000 k6 run loadtest/dashboard.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE, BASE_THRESHOLDS, latency, ownerToken, params, seed, statistics } from './lib.js';

export const options = {
  setupTimeout: '5m',
  scenarios: {
    dashboards: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: 8,
      maxVUs: Number(__ENV.MAX_VUS || 64),
    },
  },
  thresholds: {
    ...BASE_THRESHOLDS,
    ...latency('statistics', 100, 250),
    ...latency('types', 100, 250),
    dropped_iterations: ['count<10'],
  },
};

export function setup() {
  const token = ownerToken();
  seed(token, Number(__ENV.SEED_SAMPLES || 20000), 0);
  return { token };
}

export default function (data) {
  if (Math.random() < 0.05) {
    const res = http.get(`${BASE}/v1/types`, params(data.token, 'types'));
    check(res, { 'types 200': (r) => r.status === 200 });
    return;
  }
  statistics(data.token);
}
