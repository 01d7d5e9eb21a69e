// The logger this package writes to. Backend and comm are siblings (DESIGN.md layering), so
// rather than import comm's getLogger, initBackend takes any pino-compatible logger (the CLI
// passes comm's, which has the rank bound) and falls back to a plain pino logger on stderr.
import { pino } from 'pino';

/** The subset of pino's Logger that this package calls. */
export interface BackendLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

let fallback: BackendLogger | undefined;

export function defaultLogger(): BackendLogger {
  if (!fallback) {
    const rank = process.env.RANK;
    fallback = pino(
      {
        name: 'backend',
        level: process.env.ZERORING_LOG_LEVEL ?? 'info',
        base: rank === undefined ? { pid: process.pid } : { rank: Number(rank) },
      },
      pino.destination({ dest: 2, sync: true }),
    );
  }
  return fallback;
}
