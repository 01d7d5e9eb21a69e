// Worker-thread entry of the dashboard (see thread.ts). Plain JS, because a worker thread does not
// get the parent's TypeScript loader: it registers tsx itself, then runs server.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { startDashboard } = await import('./server.ts');

try {
  const dash = await startDashboard(workerData);
  parentPort.on('message', (msg) => {
    if (msg.kind === 'event') dash.publish(msg.event);
    else if (msg.kind === 'close') {
      void dash.close().then(() => {
        parentPort.postMessage({ kind: 'closed' });
        parentPort.close();
      });
    }
  });
  parentPort.postMessage({ kind: 'ready', url: dash.url, port: dash.port, host: dash.host });
} catch (err) {
  parentPort.postMessage({ kind: 'error', name: err?.name, message: err?.message ?? String(err) });
  parentPort.close();
}
