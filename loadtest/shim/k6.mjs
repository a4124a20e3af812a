// The parts of k6's `k6` module the scripts use.
export const results = { checks: 0, failed: [] };

export function check(value, checks) {
  let ok = true;
  for (const [name, fn] of Object.entries(checks)) {
    results.checks += 1;
    let passed = false;
    try {
      passed = Boolean(fn(value));
    } catch (e) {
      passed = false;
    }
    if (!passed) {
      ok = false;
      results.failed.push(`${name} (status ${value && value.status}: ${String(value && value.body).slice(0, 200)})`);
    }
  }
  return ok;
}

export function fail(message) {
  throw new Error(`fail: ${message}`);
}

export function sleep() {}
