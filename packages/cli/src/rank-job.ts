// One rank of a distributed `zeroring train` job: join the process group from torchrun's
// environment, resume after a restart, run the job, leave the group. Two entries run it:
// train-worker.ts, for the workers zeroring's own launcher starts, and `zeroring train` itself when
// another launcher (srun, a Kubernetes Indexed Job, a shell loop) started it as one rank with RANK
// and WORLD_SIZE set, the way torch scripts run under srun.
import { ConfigError, initProcessGroup } from '@zeroring/comm';
import { getLogger, setLogLevel } from '@zeroring/core';
import { resolveCheckpointDir } from '@zeroring/train';
import { runTrainJob, type TrainJobOptions } from './train-job.ts';

type Env = Readonly<Record<string, string | undefined>>;

const set = (v: string | undefined): v is string => v !== undefined && v !== '';

/**
 * Whether another launcher started this process as one rank: RANK and WORLD_SIZE are both set.
 * One without the other is a ConfigError rather than a guess: a rank that defaulted to 0 would
 * collide with the real rank 0, and a world that defaulted to 1 would train alone.
 */
export function startedAsRank(env: Env = process.env): boolean {
  if (set(env.RANK) && set(env.WORLD_SIZE)) return true;
  if (!set(env.RANK) && !set(env.WORLD_SIZE)) return false;
  const [given, missing] = set(env.RANK)
    ? [`RANK=${env.RANK}`, 'WORLD_SIZE']
    : [`WORLD_SIZE=${env.WORLD_SIZE}`, 'RANK'];
  throw new ConfigError(
    `${given} is set but ${missing} is not: expected both (a launcher that starts one process per rank sets ` +
      'RANK and WORLD_SIZE), or neither for `zeroring train` to start its own workers',
  );
}

/**
 * Rank 0 speaks for the job; the other ranks' routine lines only show with an explicit log level
 * (--log-level or ZERORING_LOG_LEVEL). Warnings and errors always show.
 */
export function quietUnlessRankZero(env: Env = process.env): void {
  if (env.RANK !== undefined && env.RANK !== '0' && env.ZERORING_LOG_LEVEL === undefined) setLogLevel('warn');
}

/** Joins the group named by the environment and runs the job as this rank; rejects if training fails. */
export async function runRank(opts: TrainJobOptions): Promise<void> {
  const log = getLogger({ cmd: 'train-worker' });
  const pg = await initProcessGroup();
  try {
    // A restart (`--max-restarts`, as torchrun's agent, or a scheduler's requeue that sets
    // ZERORING_RESTART_COUNT) continues from the newest complete checkpoint in --out when there is
    // one. Rank 0 looks and tells the others, so every rank decides alike.
    const restart = Number(process.env.ZERORING_RESTART_COUNT ?? process.env.TORCHELASTIC_RESTART_COUNT ?? 0);
    if (restart > 0 && opts.out && !opts.resume) {
      const found = new Float32Array(1);
      if (pg.rank === 0)
        found[0] = await resolveCheckpointDir(opts.out, undefined, { whole: false }).then(
          () => 1,
          () => 0,
        );
      await pg.broadcast(found, 0);
      if (found[0] === 1) {
        opts = { ...opts, resume: true };
        if (pg.rank === 0) log.warn(`restart ${restart}: resuming from the newest complete checkpoint in ${opts.out}`);
      } else if (pg.rank === 0) log.warn(`restart ${restart}: no complete checkpoint in ${opts.out}, starting over`);
    }
    await runTrainJob(opts, { comm: pg });
  } finally {
    await pg.destroy();
  }
}
