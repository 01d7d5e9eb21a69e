// How a ZeroringError that nobody caught ends the process: one line through the logger, with
// the stack trace only at debug level, and exit code 1 (Node's own for an uncaught error),
// instead of Node's source excerpt, stack and error fields. DESIGN.md promises the user one
// clear line; a plain script that awaits initProcessGroup() or a collective at top level and
// lets it throw is the common case, and the launcher relays that line with the rank's prefix.
//
// It watches through 'uncaughtExceptionMonitor', which sees the error just before Node's
// default handling, and acts only where that default would follow (no 'uncaughtException'
// listener of the program's own, or a test runner's): a program that handles uncaught errors
// itself keeps them, and any other error keeps Node's report.
import { ZeroringError } from './errors.ts';
import { getLogger } from '@zeroring/core';

let installed = false;

export function reportUncaughtZeroringErrors(): void {
  if (installed) return;
  installed = true;
  process.on('uncaughtExceptionMonitor', (err) => {
    if (!(err instanceof ZeroringError) || process.listenerCount('uncaughtException') > 0) return;
    const log = getLogger();
    const line = `${err.name}: ${err.message}`;
    if (log.isLevelEnabled('debug')) log.error({ err }, line);
    else log.error(line);
    process.exit(1);
  });
}
