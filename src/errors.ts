/**
 * Errors with a stable `code`. Messages are lowercase, say what was wrong and, where there is
 * one, the fix. Codes are mapped to HTTP statuses or exit codes only at the edge.
 */
export class ApplianceError extends Error {
  /** Stable machine-readable code, e.g. `ERR_CONFIG`. */
  readonly code: string;
  /** Extra structured detail (field names, paths) for logs and API bodies. */
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: string, message: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
}

/** Invalid configuration: the process exits with code 2 before binding anything. */
export class ConfigError extends ApplianceError {
  constructor(message: string, detail?: Record<string, unknown>) {
    super('ERR_CONFIG', message, detail);
  }
}

/** True when `err` is an ApplianceError carrying `code`. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof ApplianceError && err.code === code;
}
