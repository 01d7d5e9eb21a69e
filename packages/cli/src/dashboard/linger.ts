// What `zeroring train --dashboard` does once training is over: keep serving the finished run
// until the user stops it (Ctrl-C or SIGTERM), then close the server.
//
// The run is the interesting part of the page, so it must not go dead the moment training ends;
// the user who opened it decides when they have seen enough. A stop signal at this point is the
// normal way out, not an interruption: the command still reports the run's own outcome.
import type { AttachedDashboard } from './attach.ts';

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/** Resolves with the first of SIGINT / SIGTERM; holds the process open until then. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    // A signal listener does not keep Node's event loop alive, and the dashboard thread is
    // unref'd (it must not hold a failing run open), so something has to while we wait.
    const hold = setInterval(() => {}, 1 << 30);
    const onSignal = (signal: NodeJS.Signals): void => {
      clearInterval(hold);
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
      resolve(signal);
    };
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
  });
}

/**
 * Says on the terminal that the finished run is still served, waits for Ctrl-C / SIGTERM and
 * closes the dashboard. A second Ctrl-C while closing gets Node's default: exit at once.
 */
export async function serveFinishedRun(
  dash: AttachedDashboard,
  say: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Promise<NodeJS.Signals> {
  const stopped = waitForStopSignal();
  say(`training done; dashboard still serving the finished run at ${dash.url} — press Ctrl-C to exit`);
  const signal = await stopped;
  await dash.close();
  return signal;
}
