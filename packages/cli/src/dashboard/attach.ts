// Wiring between `zeroring train --dashboard [PORT]` and the dashboard server.
//
// In-process training passes `onEvent` to the trainer. When the train command only launches
// workers, the trainer of rank 0 runs elsewhere: then give `outDir`, a directory whose
// events.jsonl rank 0 appends to, and the dashboard follows it. Both feeds may be used together
// only if they carry different events.
import { Option } from 'commander';
import type { OnTrainEvent } from '@zeroring/train';
import { startDashboardThread } from './thread.ts';
import { cliParser } from '../logging.ts';

export const DEFAULT_DASHBOARD_PORT = 8787;

export interface AttachedDashboard {
  url: string;
  /** Hook for the trainer's `onEvent`: publishes to every open page. */
  onEvent: OnTrainEvent;
  close(): Promise<void>;
}

export async function attachDashboard(
  port: number = DEFAULT_DASHBOARD_PORT,
  opts: { host?: string; outDir?: string; quiet?: boolean } = {},
): Promise<AttachedDashboard> {
  // On its own thread: the training loop blocks this one for seconds inside tfjs kernels.
  const dash = await startDashboardThread({ port, host: opts.host, outDir: opts.outDir });
  if (!opts.quiet) process.stderr.write(`dashboard: ${dash.url}\n`);
  return { url: dash.url, onEvent: dash.publish, close: dash.close };
}

/** Parses a port argument; names the bad value. 0 means "any free port". */
export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) {
    throw new RangeError(`port ${JSON.stringify(value)} is invalid: expected an integer 0..65535`);
  }
  return n;
}

/**
 * `--dashboard [PORT]` for commander: absent -> undefined, bare flag -> DEFAULT_DASHBOARD_PORT.
 * Use with `resolveDashboardPort(opts.dashboard)`.
 */
export function dashboardOption(): Option {
  const what =
    `serve a live dashboard on 127.0.0.1 (default port ${DEFAULT_DASHBOARD_PORT}); ` +
    'after training it keeps serving the finished run until Ctrl-C';
  return new Option('--dashboard [port]', what).argParser(cliParser(parsePort));
}

export function resolveDashboardPort(value: number | boolean | undefined): number | undefined {
  if (value === undefined || value === false) return undefined;
  return value === true ? DEFAULT_DASHBOARD_PORT : value;
}
