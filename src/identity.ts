/**
 * Machine identifiers as every part of the appliance writes them: MACs lowercase and
 * colon-separated, SMBIOS UUIDs lowercase with dashes. Request parameters, DHCP packets, the
 * store and the event log all normalise through here, so one machine has one key everywhere.
 */

/** Normalise a MAC to lowercase colon-separated form (`52:54:00:12:34:56`); undefined when it is not a MAC. */
export function normalizeMac(input: string): string | undefined {
  // Most callers pass a MAC that is already canonical (DHCP, the store): answer those at once.
  if (CANONICAL_MAC.test(input)) return input;
  const hex = input
    .trim()
    .toLowerCase()
    .replace(/[:\-.]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}

const CANONICAL_MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** UUIDs firmware reports when it has none: all zeros or all ones (SMBIOS 2.6 §7.2.1). */
export function isPlaceholderUuid(uuid: string): boolean {
  const hex = uuid.replace(/-/g, '').toLowerCase();
  return /^0+$/.test(hex) || /^f+$/.test(hex);
}

/** Lowercase UUID, or undefined for missing / placeholder / malformed values. */
export function normalizeUuid(input: string | undefined): string | undefined {
  if (!input) return undefined;
  const u = input.trim().toLowerCase();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(u)) return undefined;
  return isPlaceholderUuid(u) ? undefined : u;
}
