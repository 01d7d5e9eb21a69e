// WebGPU on a real GPU, as one short run: initBackend('webgpu') (logs the adapter), what
// 'auto' picks there, a matmul and a one-layer GPT step (loss + every gradient) checked
// against cpu, and matmul timings for webgpu vs cpu. Meant for a GPU machine (how to run it
// there: benchmarks/device-check/README.md); it runs on any machine with a Vulkan driver:
//
//   node --import tsx benchmarks/device-check/backend.ts
//
// Writes a JSON report, backend-<gpu>.json (e.g. backend-h200.json), to $OUT if set, else to
// benchmarks/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESULTS_DIR, machineTag } from '../common/results.ts';
import { tf, initBackend, type BackendInfo, type BackendLogger } from '@zeroring/backend';
import { gptStep } from '../../packages/backend/test/gpt-ops.ts';
import { runOn, worstError } from '../../packages/backend/test/helpers.ts';

const report: Record<string, unknown> = { date: new Date().toISOString(), node: process.version };
const logged: object[] = [];
const logger: BackendLogger = {
  info: (o, m) => (logged.push(o), console.log('INFO', m, JSON.stringify(o))),
  warn: (o, m) => (logged.push(o), console.log('WARN', m, JSON.stringify(o))),
  debug: () => {},
};

async function step<T>(name: string, f: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  try {
    const r = await f();
    report[name] = { ok: true, ms: Math.round(performance.now() - t0), result: r };
    console.log(`OK   ${name}`, JSON.stringify(r));
    return r;
  } catch (err) {
    report[name] = { ok: false, error: String((err as Error)?.stack ?? err) };
    console.log(`FAIL ${name}`, err);
    return undefined;
  }
}

const webgpu = await step('initWebgpu', () => initBackend('webgpu', { logger }));
await step('auto', async () => {
  const info: BackendInfo = await initBackend('auto', { logger });
  return { name: info.name, reason: info.reason };
});

if (webgpu) {
  const compare = async (fn: () => tf.Tensor[], atol: number, rtol: number) => {
    const ref = await runOn('cpu', fn);
    const got = await runOn('webgpu', fn);
    const worst = got.map((g, i) => worstError(g, ref[i]!, atol, rtol));
    if (worst.some((w) => !(w <= 1))) throw new Error(`mismatch vs cpu: worst error ratios ${worst}`);
    return { worst: Math.max(...worst), loss: got[0]![0] };
  };
  await step('matmulVsCpu', () =>
    compare(
      () => [
        tf.matMul(tf.randomUniform([256, 192], -1, 1, 'float32', 1), tf.randomUniform([192, 128], -1, 1, 'float32', 2)),
      ],
      1e-3,
      1e-2,
    ),
  );
  await step('gptStepVsCpu', () => compare(() => gptStep('tanh'), 1e-4, 1e-2));
  await step('matmulTimings', async () => {
    const out: Record<string, number> = {};
    // 2048² only on a hardware adapter: on lavapipe one such product takes most of a minute.
    for (const n of webgpu.adapter?.software ? [512] : [512, 2048]) {
      for (const backend of ['webgpu', 'cpu'] as const) {
        if (backend === 'cpu' && n > 512) continue;
        await initBackend(backend, { logger: { info() {}, warn() {}, debug() {} } });
        const a = tf.randomUniform([n, n]);
        const b = tf.randomUniform([n, n]);
        await tf.matMul(a, b).data(); // warm-up
        const inner = backend === 'cpu' ? 1 : 10;
        const samples: number[] = [];
        for (let r = 0; r < 5; r++) {
          const t0 = performance.now();
          const outs = Array.from({ length: inner }, () => tf.matMul(a, b));
          await outs.at(-1)!.data();
          samples.push((performance.now() - t0) / inner);
          tf.dispose(outs);
        }
        tf.dispose([a, b]);
        const ms = samples.sort((x, y) => x - y)[2]!;
        out[`${backend} ${n}² ms`] = Number(ms.toFixed(3));
        out[`${backend} ${n}² GFLOP/s`] = Number(((2 * n ** 3) / ms / 1e6).toFixed(1));
      }
    }
    return out;
  });
}

report.logged = logged;
const dir = process.env.OUT ?? RESULTS_DIR;
const file = join(dir, `backend-${machineTag(webgpu?.adapter)}.json`);
mkdirSync(dir, { recursive: true });
writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
console.log(`wrote ${file}`);
process.exit(0); // Dawn's device keeps the event loop alive
