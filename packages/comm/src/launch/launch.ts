// launch(): the library behind `zeroring launch` (and `zeroring train --nproc`). It starts the
// local worker group with torchrun's environment, and like torchrun's elastic agent restarts
// the whole group after a failure up to maxRestarts times (ZERORING_RESTART_COUNT tells the
// workers which attempt they are, so a trainer resumes from its latest checkpoint). Signals
// sent to the launcher are forwarded; a failure stops the other workers; nothing is left behind.
// With a node range (`--nnodes MIN:MAX`) the launchers form the world among themselves instead,
// and re-form it when a node leaves: elastic/agent.ts.
import { assertStorePortFree, freePort } from './env.ts';
import { LaunchContext, type LaunchResult } from './context.ts';
import { runElastic } from './elastic/agent.ts';
import { resolveLaunchOptions, type LaunchOptions } from './options.ts';
import { describeExit, statusCode, WorkerGroup } from './worker-group.ts';

export { workerCommand, type LaunchResult } from './context.ts';

export async function launch(opts: LaunchOptions): Promise<LaunchResult> {
  const ctx = new LaunchContext(resolveLaunchOptions(opts), opts);
  try {
    return await (ctx.o.elastic ? runElastic(ctx, ctx.o.elastic) : runFixed(ctx));
  } finally {
    ctx.dispose();
  }
}

/** A fixed world: this node's group, restarted in place up to maxRestarts times. */
async function runFixed(ctx: LaunchContext): Promise<LaunchResult> {
  const { o, say } = ctx;
  const nodeRank = o.nodeRank ?? 0;
  if (nodeRank === 0 && o.masterPort !== undefined) await assertStorePortFree(o.masterAddr, o.masterPort);
  for (let attempt = 0; ; attempt++) {
    if (ctx.stoppedBy) return ctx.stopped(ctx.stoppedBy, attempt);
    const masterPort = o.masterPort ?? (await freePort(o.masterAddr));
    if (ctx.stoppedBy) return ctx.stopped(ctx.stoppedBy, attempt); // a signal came while we picked the port
    const placement = { rankBase: nodeRank * o.nprocPerNode, worldSize: o.worldSize, nodeRank, masterPort };
    const group = new WorkerGroup(ctx.specs({ ...placement, restartCount: attempt }), ctx.io);
    ctx.setGroup(group);
    const result = await group.done;
    ctx.setGroup(undefined);
    if (result.outcome === 'succeeded') return { exitCode: 0, outcome: 'succeeded', restarts: attempt };
    if (result.outcome === 'stopped' || ctx.stoppedBy) return ctx.stopped(ctx.stoppedBy ?? 'SIGTERM', attempt);
    const failure = result.failure!;
    if (attempt < o.maxRestarts) {
      say(
        `restarting the local group (restart ${attempt + 1} of ${o.maxRestarts}) ` +
          `after rank ${failure.rank} failed with ${describeExit(failure)}`,
      );
      continue;
    }
    const left = o.maxRestarts > 0 ? ` after ${attempt} restart${attempt === 1 ? '' : 's'}` : '';
    say(
      `job failed${left}: rank ${failure.rank} (local rank ${failure.localRank}) exited with ${describeExit(failure)}`,
    );
    return { exitCode: statusCode(failure) || 1, outcome: 'failed', restarts: attempt, failure };
  }
}
