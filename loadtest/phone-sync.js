// Phones syncing: each VU is a phone that writes batches of 100–1000
// samples and now and then retries its last batch (same sync ids: the server must
// answer 200 and store nothing twice).
//
//   HEARTH_PASSPHRASE=… k6 run loadtest/phone-sync.js
//   VUS=16 DURATION=5m HEARTH_URL=http://127.0.0.1:7380 k6 run loadtest/phone-sync.js
import { check } from 'k6';
import http from 'k6/http';
import {
  BASE,
  BASE_THRESHOLDS,
  PHONE_KINDS,
  batch,
  latency,
  ownerToken,
  params,
  pick,
  randInt,
  randomTime,
  write,
} from './lib.js';

export const options = {
  scenarios: {
    phones: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 8),
      duration: __ENV.DURATION || '1m',
    },
  },
  thresholds: {
    ...BASE_THRESHOLDS,
    ...latency('write-batch', 500, 1000),
    ...latency('write-retry', 500, 1000),
  },
};

export function setup() {
  return { token: ownerToken() };
}

// Per VU: this phone's clock and its last acknowledged batch.
let clock = randomTime();
let lastBatch = null;

export default function (data) {
  if (lastBatch && Math.random() < 0.1) {
    const res = http.post(`${BASE}/v1/samples`, lastBatch, params(data.token, 'write-retry'));
    check(res, {
      'retry is a no-op': (r) => r.status === 200 && r.json('added') === 0,
    });
    return;
  }
  const generated = batch(pick(PHONE_KINDS), randInt(100, 1000), clock);
  clock = generated.clock;
  if (write(data.token, 'write-batch', generated.body)) lastBatch = generated.body;
}
