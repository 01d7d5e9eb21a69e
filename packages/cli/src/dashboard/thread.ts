// The dashboard server on its own thread. A training process spends seconds at a time inside
// tfjs kernels without returning to the event loop; a server on the main thread then answers the
// browser only between blocks, and loading the page can take longer than a browser waits. On a
// worker thread it answers at once; events reach it by postMessage (structured clone, cheap at
// one event per step).
import { Worker } from 'node:worker_threads';
import type { TrainEvent } from '@zeroring/train';
import type { DashboardOptions } from './server.ts';

export interface DashboardThread {
  url: string;
  port: number;
  host: string;
  publish(event: TrainEvent): void;
  close(): Promise<void>;
}

type FromThread =
  | { kind: 'ready'; url: string; port: number; host: string }
  | { kind: 'error'; name?: string; message: string }
  | { kind: 'closed' };

export class DashboardStartError extends Error {
  override name = 'DashboardStartError';
}

export async function startDashboardThread(opts: DashboardOptions): Promise<DashboardThread> {
  const worker = new Worker(new URL('./thread-entry.mjs', import.meta.url), { workerData: opts });
  // Never keep a finished run alive just because its dashboard still listens.
  worker.unref();
  const ready = await new Promise<{ url: string; port: number; host: string }>((resolve, reject) => {
    const where = `${opts.host ?? '127.0.0.1'}:${opts.port}`;
    const onExit = (code: number) =>
      reject(new DashboardStartError(`dashboard thread for ${where} exited (code ${code}) before listening`));
    const onError = (err: Error) =>
      reject(new DashboardStartError(`dashboard on ${where} failed to start: ${err.message}`));
    worker.once('error', onError);
    worker.once('exit', onExit);
    worker.once('message', (msg: FromThread) => {
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (msg.kind === 'ready') resolve(msg);
      else if (msg.kind === 'error')
        reject(new DashboardStartError(`dashboard on ${where} failed to start: ${msg.message}`));
      else reject(new DashboardStartError(`dashboard thread sent ${msg.kind} before ready`));
    });
  });
  let closing: Promise<void> | undefined;
  return {
    ...ready,
    publish(event) {
      if (!closing) worker.postMessage({ kind: 'event', event });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        const done = () => resolve();
        worker.once('exit', done);
        worker.on('message', (msg: FromThread) => {
          if (msg.kind === 'closed') void worker.terminate().then(done, done);
        });
        worker.postMessage({ kind: 'close' });
        // The server's own close takes at most ~1 s (it waits that long for pages to say goodbye).
        setTimeout(() => void worker.terminate().then(done, done), 5000).unref();
      });
      return closing;
    },
  };
}
