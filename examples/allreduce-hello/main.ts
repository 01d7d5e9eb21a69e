// allreduce-hello: the smallest zeroring program. Every rank contributes (rank + 1); after the
// all-reduce every rank holds the same sum, 1 + 2 + ... + worldSize.
//
//   pnpm exec zeroring launch --nproc-per-node 2 examples/allreduce-hello/main.ts
//
// initProcessGroup() reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and ZERORING_TOKEN, which
// the launcher sets (or Slurm, Kubernetes, or you by hand: see README.md).
import { initProcessGroup } from '@zeroring/comm';

const pg = await initProcessGroup();
const buf = new Float32Array([pg.rank + 1]);
await pg.allReduce(buf, { op: 'sum' });
console.log(
  `rank ${pg.rank} of ${pg.worldSize}: sum = ${buf[0]} (expected ${(pg.worldSize * (pg.worldSize + 1)) / 2})`,
);
await pg.destroy();
