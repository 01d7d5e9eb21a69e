// Worker entry of `zeroring train --nproc N`: the launcher starts one of these per rank with the
// torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) and the job options as one JSON
// argument. Each runs as one rank of the job (rank-job.ts), as `zeroring train` does itself when
// another launcher starts it with that environment.
import { getLogger, logFailure } from '@zeroring/core';
import { quietUnlessRankZero, runRank } from './rank-job.ts';
import { TrainJobError, type TrainJobOptions } from './train-job.ts';

quietUnlessRankZero();
const log = getLogger({ cmd: 'train-worker' });
const json = process.argv[2];
if (!json) throw new TrainJobError('train-worker expects the job options as a JSON argument, got none');
const opts = JSON.parse(json) as TrainJobOptions;

try {
  await runRank(opts);
} catch (err) {
  logFailure(log, err, `rank ${process.env.RANK ?? '?'}: training failed`);
  process.exitCode = 1;
}
