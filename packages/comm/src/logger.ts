// One pino logger per process with the rank bound (DESIGN.md, "Conventions"): pretty on a
// TTY, JSON lines otherwise, level from ZERORING_LOG_LEVEL (the CLI's --log-level sets it so
// that workers started by the launcher inherit it).
import { pino, type Logger } from 'pino';

export type { Logger };

let root: Logger | undefined;

export function getLogger(bindings: Record<string, unknown> = {}): Logger {
  if (!root) {
    const level = process.env.ZERORING_LOG_LEVEL ?? 'info';
    const rank = process.env.RANK;
    const pretty = process.stderr.isTTY && process.env.ZERORING_LOG_FORMAT !== 'json';
    root = pino(
      {
        level,
        base: rank === undefined ? { pid: process.pid } : { rank: Number(rank) },
        ...(pretty
          ? { transport: { target: 'pino-pretty', options: { destination: 2, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' } } }
          : {}),
      },
      pretty ? undefined : pino.destination({ dest: 2, sync: true }),
    );
  }
  return Object.keys(bindings).length ? root.child(bindings) : root;
}

/**
 * Sets the level for this process (an existing root logger too) and, through the environment,
 * for workers it starts afterwards. Child loggers made before the change keep their level.
 */
export function setLogLevel(level: string): void {
  process.env.ZERORING_LOG_LEVEL = level;
  if (root) root.level = level;
}
