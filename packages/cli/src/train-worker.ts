// Worker entry of `zeroring train --nproc N`: the launcher starts one of these per rank with the
// torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) and the job options as one JSON
// argument. Each joins the process group, builds the distributed strategy and runs the same job
// as a single process would (train-job.ts).
import { initProcessGroup } from '@zeroring/comm';
import { getLogger, logFailure, setLogLevel } from '@zeroring/core';
import { resolveCheckpointDir } from '@zeroring/train';
import { runTrainJob, TrainJobError, type TrainJobOptions } from './train-job.ts';

// Rank 0 speaks for the job; the other ranks' routine lines only show with an explicit
// --log-level (e.g. debug). Warnings and errors always show.
if (process.env.RANK !== undefined && process.env.RANK !== '0' && process.env.ZERORING_LOG_LEVEL === undefined)
  setLogLevel('warn');
const log = getLogger({ cmd: 'train-worker' });
const json = process.argv[2];
if (!json) throw new TrainJobError('train-worker expects the job options as a JSON argument, got none');
const opts = JSON.parse(json) as TrainJobOptions;

async function main(): Promise<void> {
  const pg = await initProcessGroup();

  // Elastic restart (`--max-restarts`, as torchrun's agent): the launcher restarts the whole group
  // with ZERORING_RESTART_COUNT > 0, and the group continues from the newest complete checkpoint in
  // --out when there is one. Rank 0 looks and tells the others, so every rank decides alike.
  if (Number(process.env.ZERORING_RESTART_COUNT ?? 0) > 0 && opts.out && !opts.resume) {
    const found = new Float32Array(1);
    if (pg.rank === 0)
      found[0] = await resolveCheckpointDir(opts.out, undefined, { whole: false }).then(
        () => 1,
        () => 0,
      );
    await pg.broadcast(found, 0);
    if (found[0] === 1) {
      opts.resume = true;
      if (pg.rank === 0)
        log.warn(
          `restart ${process.env.ZERORING_RESTART_COUNT}: resuming from the newest complete checkpoint in ${opts.out}`,
        );
    } else if (pg.rank === 0)
      log.warn(`restart ${process.env.ZERORING_RESTART_COUNT}: no complete checkpoint in ${opts.out}, starting over`);
  }
  try {
    await runTrainJob(opts, { comm: pg });
  } finally {
    await pg.destroy();
  }
}

try {
  await main();
} catch (err) {
  logFailure(log, err, `rank ${process.env.RANK ?? '?'}: training failed`);
  process.exitCode = 1;
}
