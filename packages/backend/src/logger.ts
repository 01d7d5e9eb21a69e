// What this package logs through: any pino-compatible logger the caller passes (the CLI passes
// its own, with the command bound), by default the process's one logger from @zeroring/core.
import { getLogger } from '@zeroring/core';

/** The subset of pino's Logger that this package calls. */
export interface BackendLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export function defaultLogger(): BackendLogger {
  return getLogger({ component: 'backend' });
}
