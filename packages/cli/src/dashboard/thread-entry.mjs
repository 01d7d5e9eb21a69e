// Worker-thread entry of the dashboard (see thread.ts). Plain JS, because a worker thread does not
// get the parent's TypeScript loader: built, it runs server.js beside it; run from the sources
// (tests), it registers tsx and runs server.ts.
import { existsSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const built = new URL('./server.js', import.meta.url);
let server = built.href;
if (!existsSync(built)) {
  const { register } = await import('tsx/esm/api');
  register();
  server = new URL('./server.ts', import.meta.url).href;
}
const { startDashboard } = await import(server);

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
