// Spike: the mixed apps at a trickle, then a sudden jump to many at once,
// then back. Latency limits are looser than in steady runs; errors are not.
//
//   HEARTH_PASSPHRASE=… k6 run loadtest/spike.js
//   PEAK=200 k6 run loadtest/spike.js
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

const PEAK = Number(__ENV.PEAK || 50);
const BASELINE = Math.max(1, Math.round(PEAK / 10));

export const options = {
  setupTimeout: '5m',
  scenarios: {
    spike: {
      executor: 'ramping-vus',
      startVUs: BASELINE,
      stages: [
        { duration: '30s', target: BASELINE },
        { duration: '5s', target: PEAK },
        { duration: '30s', target: PEAK },
        { duration: '5s', target: BASELINE },
        { duration: '30s', target: BASELINE },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: {
    ...BASE_THRESHOLDS,
    ...latency('write-batch', 2000, 4000),
    ...latency('write-small', 1000, 2000),
    ...latency('statistics', 500, 1000),
    ...latency('list-page', 500, 1000),
    ...latency('get-by-id', 250, 500),
  },
};

export function setup() {
  const token = ownerToken();
  return { token, ids: seed(token, Number(__ENV.SEED_SAMPLES || 5000)) };
}

let clock = randomTime();

// Every VU plays each app in turn, as the Rust generator's spike does.
export default function (data) {
  switch (randInt(0, 5)) {
    case 0: {
      const generated = batch(pick(PHONE_KINDS), randInt(100, 1000), clock);
      clock = generated.clock;
      write(data.token, 'write-batch', generated.body);
      break;
    }
    case 1: {
      const generated = batch(KINDS.heartRate, randInt(1, 20), clock);
      clock = generated.clock;
      write(data.token, 'write-small', generated.body);
      break;
    }
    case 2:
      statistics(data.token);
      break;
    case 3:
      browse(data.token);
      break;
    case 4:
      lookup(data.token, data.ids);
      break;
    default: {
      const generated = batch(KINDS.bodyMass, 1, clock);
      clock = generated.clock;
      write(data.token, 'write-small', generated.body);
    }
  }
}
