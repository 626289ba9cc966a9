/**
 * JSON Merge Patch (RFC 7396 §2): objects merge key by key, `null` removes a key, anything else
 * (arrays included) replaces the target. Pure; neither argument is modified.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    // Own keys only, and never the prototype: a patch is JSON from a client.
    if (key === '__proto__') continue;
    if (value === null) delete base[key];
    else base[key] = applyMergePatch(Object.hasOwn(base, key) ? base[key] : undefined, value);
  }
  return base;
}
