// One pino logger per process with the rank bound (DESIGN.md, "Conventions"): pretty on a
// TTY, JSON lines otherwise, level from ZERORING_LOG_LEVEL (the CLI's --log-level sets it so
// that workers started by the launcher inherit it). ZERORING_LOG_FORMAT=pretty|json overrides the
// TTY test; the launcher sets it for workers, whose stderr is a pipe to the launcher's terminal.
import { pino, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

let root: Logger | undefined;

export function getLogger(bindings: Record<string, unknown> = {}): Logger {
  if (!root) {
    const level = process.env.ZERORING_LOG_LEVEL ?? 'info';
    const rank = process.env.RANK;
    // Pretty output is written synchronously on this thread, as JSON is: lines keep their order
    // with stdout (the sample, the progress line) and none is lost when the process exits. The
    // messages carry what a reader needs; the fields behind them show at debug level.
    const destination =
      logFormat() === 'pretty'
        ? pinoPretty({
            destination: 2,
            sync: true,
            ignore: 'pid,hostname',
            translateTime: 'HH:MM:ss.l',
            hideObject: level !== 'debug' && level !== 'trace',
          })
        : pino.destination({ dest: 2, sync: true });
    root = pino({ level, base: rank === undefined ? { pid: process.pid } : { rank: Number(rank) } }, destination);
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

/** The format this process logs in: ZERORING_LOG_FORMAT if set, else pretty on a terminal. */
export function logFormat(env: NodeJS.ProcessEnv = process.env, stderrIsTTY = process.stderr.isTTY): 'pretty' | 'json' {
  const f = env.ZERORING_LOG_FORMAT;
  if (f === 'pretty' || f === 'json') return f;
  return stderrIsTTY ? 'pretty' : 'json';
}

/** `Name: message` of an error, for a one-line report (its cause and stack are for debug level). */
export function errorLine(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.name && !err.message.startsWith(err.name) ? `${err.name}: ${err.message}` : err.message;
}

/**
 * Reports a failure the way a user should meet it: one line at error level, and the stack trace
 * only at debug level (--log-level debug), where it helps whoever debugs the code.
 */
export function logFailure(log: Logger, err: unknown, what: string): void {
  log.error(`${what}: ${errorLine(err)}`);
  log.debug({ err }, `${what}: stack trace`);
}
