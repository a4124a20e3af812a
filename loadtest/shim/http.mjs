// The parts of k6's `k6/http` module the scripts use, made synchronous (as in
// k6) with curl. Loopback only: run.mjs refuses other targets.
import { execFileSync } from 'node:child_process';

export const requests = { count: 0, failed: 0, byName: {} };

function request(method, url, body, params = {}) {
  const args = ['-sS', '--noproxy', '*', '--max-time', '30', '-X', method, '-w', '\n%{http_code}'];
  for (const [k, v] of Object.entries(params.headers || {})) args.push('-H', `${k}: ${v}`);
  if (body !== null && body !== undefined) args.push('--data-binary', '@-');
  args.push(url);
  const out = execFileSync('curl', args, { input: body ?? '', maxBuffer: 64 << 20 }).toString();
  const cut = out.lastIndexOf('\n');
  const status = Number(out.slice(cut + 1));
  const text = out.slice(0, cut);
  const name = (params.tags && params.tags.name) || url;
  requests.count += 1;
  requests.byName[name] = (requests.byName[name] || 0) + 1;
  if (!(status >= 200 && status < 400)) requests.failed += 1;
  return {
    status,
    body: text,
    json(path) {
      const value = JSON.parse(text);
      if (!path) return value;
      return path.split('.').reduce((v, k) => (v === null || v === undefined ? v : v[k]), value);
    },
  };
}

export default {
  get: (url, params) => request('GET', url, null, params),
  post: (url, body, params) => request('POST', url, body, params),
};
