// A checkpoint of the run: every rank's pieces of the model state plus, from rank 0, the full
// parameters (model.bin, for sampling), the run configuration, trainer.json (the next step, the
// global batch and what else a resumed run needs besides the model state) and the caller's
// extra files.
import { encodeShard, saveCheckpoint } from '../checkpoint.ts';
import { checkpointShare } from '../state-source.ts';
import type { BatchBalancer } from '../batch-balance.ts';
import type { TrainRun } from './run.ts';

/** Saves the checkpoint from which a resumed run starts at `nextStep` (collective). */
export async function saveRunCheckpoint(
  run: TrainRun,
  nextStep: number,
  initialValLoss: number | null,
  balancer: BatchBalancer | undefined,
): Promise<void> {
  const { opts, cfg, rank, worldSize, checkpointRoot } = run;
  if (!checkpointRoot) return;
  const { strategy, comm } = opts;
  // Replicated state is alike across the ranks that read different windows (a stage's across pipelines).
  const shard = checkpointShare(await strategy.saveState(), run.dataRank, run.dataWorld);
  const full = await strategy.fullParams();
  await saveCheckpoint({
    root: checkpointRoot,
    step: nextStep,
    rank,
    worldSize,
    shard,
    keep: cfg.keepCheckpoints,
    barrier: comm && worldSize > 1 ? async () => void (await comm.barrier()) : undefined,
    common: {
      'config.json': run.runConfig,
      'trainer.json': {
        nextStep,
        seed: cfg.seed,
        worldSize,
        strategy: strategy.name,
        globalBatch: run.batch.global,
        // Stream positions trained so far: every step reads the next globalBatch of them.
        windowsSeen: nextStep * run.batch.global,
        initialValLoss,
        ...(balancer && cfg.balanceBatch ? { batchSplit: [...balancer.split] } : {}),
      },
      'model.bin': encodeShard({ meta: { kind: 'full-params' }, arrays: full }),
      ...opts.checkpointFiles,
    },
  });
}
