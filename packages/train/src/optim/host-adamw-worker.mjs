// Worker thread of HostAdamW (host-adamw.ts): instantiates the shared AdamW WASM module over the
// shared memory it is handed and runs its fixed slice of the update whenever the main thread
// posts a step's scalars. Plain JS so a worker starts without the TypeScript loader.
import { parentPort, workerData } from 'node:worker_threads';

const { module, memory } = workerData;
const { adamw } = new WebAssembly.Instance(module, { env: { memory } }).exports;
// Each run: [pByte, gByte, mByte, vByte, n, decayed (0|1)], set by a 'runs' message.
let runs = [];

parentPort.on('message', (msg) => {
  if (msg.type === 'runs') {
    runs = msg.runs;
    return;
  }
  const s = msg.scalars;
  for (const [p, g, m, v, n, decayed] of runs) {
    adamw(
      p,
      g,
      m,
      v,
      n,
      decayed ? s.decay : 1,
      s.beta1,
      s.oneMinusBeta1,
      s.beta2,
      s.oneMinusBeta2,
      s.stepSize,
      s.bc2Sqrt,
      s.eps,
    );
  }
  parentPort.postMessage(msg.id);
});
