// Worker entry of `zeroring train --nproc N`: the launcher starts one of these per rank with the
// torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) and the job options as one JSON
// argument. Each joins the process group, builds the distributed strategy and runs the same job
// as a single process would (train-job.ts).
import { initProcessGroup } from '@zeroring/comm';
import { getLogger } from '@zeroring/comm/logger';
import { runTrainJob, TrainJobError, type StrategyFactory, type TrainJobOptions } from './train-job.ts';

const log = getLogger({ cmd: 'train-worker' });
const json = process.argv[2];
if (!json) throw new TrainJobError('train-worker expects the job options as a JSON argument, got none');
const opts = JSON.parse(json) as TrainJobOptions;

const pg = await initProcessGroup();
// The DDP / ZeRO strategies over `pg` plug in here (issues 4 and 5).
const makeStrategy: StrategyFactory = (name) => {
  throw new TrainJobError(`strategy ${name} over ${pg.worldSize} processes is not implemented yet; expected one of: (none yet)`);
};
try {
  await runTrainJob(opts, { comm: pg, makeStrategy });
} catch (err) {
  log.error({ err }, `rank ${pg.rank}: training failed`);
  process.exitCode = 1;
} finally {
  await pg.destroy();
}
