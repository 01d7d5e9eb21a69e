// Worker of benchmarks/pipeline: one micro-batch's activation there and back between ranks 0 and
// 1 over the process group's send/recv, the path a pipeline's activations and gradients take
// (PipelineRun, executor.ts). Rank 0 prints the one-way times as `RESULT {json}`.
import { initProcessGroup } from '@zeroring/comm';

const args = JSON.parse(process.argv[2] ?? '{}') as { floats: number; pings: number };
const pg = await initProcessGroup();
const buf = new Float32Array(args.floats);
const pings: number[] = [];
// Two rounds first to open the links and warm up.
for (let i = -2; i < args.pings; i++) {
  const t0 = performance.now();
  if (pg.rank === 0) {
    await pg.send(buf, 1);
    await pg.recv(buf, 1);
    if (i >= 0) pings.push((performance.now() - t0) / 2);
  } else {
    await pg.recv(buf, 0);
    await pg.send(buf, 0);
  }
}
if (pg.rank === 0) process.stdout.write(`RESULT ${JSON.stringify({ pings })}\n`);
await pg.destroy();
