// Module hooks that resolve k6's built-in modules to the shims beside this
// file, so the k6 scripts can run under node (see run.mjs).
const shims = {
  k6: new URL('./k6.mjs', import.meta.url).href,
  'k6/http': new URL('./http.mjs', import.meta.url).href,
};

export async function resolve(specifier, context, next) {
  if (specifier in shims) return { url: shims[specifier], shortCircuit: true };
  return next(specifier, context);
}
