/**
 * Optional properties under `exactOptionalPropertyTypes` (tsconfig.json): `x?: T` means "absent
 * or a T", never "present and undefined", so a value that may be undefined is passed only when
 * it is defined. `...definedFields({ a, b })` says that once for several fields instead of one
 * `...(a !== undefined ? { a } : {})` each.
 */

/** `fields` without the keys whose value is undefined. */
export function definedFields<T extends Record<string, unknown>>(fields: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}
