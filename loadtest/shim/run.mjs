// Runs a k6 script's setup and a few iterations of each of its scenarios
// under node, against a live server, and fails on any failed check or
// request. A smoke test of the scripts where k6 is not installed; it measures
// nothing. Usage (HEARTH_URL and HEARTH_PASSPHRASE set):
//
//   node --import ./loadtest/shim/register.mjs loadtest/shim/run.mjs loadtest/mixed-day.js [ITERATIONS]
import path from 'node:path';
import { pathToFileURL } from 'node:url';

globalThis.__ENV = { ...process.env, SEED_SAMPLES: process.env.SEED_SAMPLES || '2000' };
const url = new URL(globalThis.__ENV.HEARTH_URL || 'http://127.0.0.1:7380');
if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
  console.error(`refusing ${url.href}: the shim runs against loopback only`);
  process.exit(2);
}

const script = process.argv[2];
const iterations = Number(process.argv[3] || 3);
const { results } = await import('k6');
const { requests } = await import('k6/http');
const mod = await import(pathToFileURL(path.resolve(script)).href);

const problems = [];
const thresholds = (mod.options && mod.options.thresholds) || {};
if (!(thresholds.http_req_failed || []).includes('rate<0.001')) {
  problems.push('no http_req_failed < 0.1% threshold');
}
if (!Object.keys(thresholds).some((k) => k.startsWith('http_req_duration'))) {
  problems.push('no latency threshold');
}

const data = mod.setup ? mod.setup() : undefined;
const scenarios = Object.entries((mod.options && mod.options.scenarios) || { default: {} });
for (const [name, scenario] of scenarios) {
  const exec = scenario.exec || 'default';
  if (typeof mod[exec] !== 'function') {
    problems.push(`scenario ${name}: no exported function ${exec}`);
    continue;
  }
  for (let i = 0; i < iterations; i++) mod[exec](data);
}

console.log(
  `${path.basename(script)}: ${requests.count} requests (${JSON.stringify(requests.byName)}), ` +
    `${results.checks} checks, ${results.failed.length} failed, ${requests.failed} failed requests`,
);
problems.push(...results.failed.slice(0, 5));
if (requests.failed > 0) problems.push(`${requests.failed} requests failed`);
if (problems.length) {
  console.error(`${script}:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
