// The elastic agent: `launch()` with `nnodes: { min, max }`, as torchrun's elastic agent with
// its c10d rendezvous backend. The launchers meet through the agent store (agent-store.ts), the
// master node's launcher forms each round (coordinator.ts), and every launcher runs its share of
// the round's world (round.ts). When a round ends for any reason but success, the nodes that are
// left re-form the world for the next round, with ZERORING_RESTART_COUNT = the round, up to
// maxRestarts times. The master node's launcher dying ends the job.
import { ConfigError, PeerLostError, ZeroringError } from '../../errors.ts';
import type { LaunchContext, LaunchResult } from '../context.ts';
import type { ElasticOptions } from '../options.ts';
import { statusCode, type WorkerExit } from '../worker-group.ts';
import { openAgentStore, type AgentStore } from './agent-store.ts';
import { coordinate } from './coordinator.ts';
import {
  admission,
  describeNode,
  FOREVER_MS,
  keys,
  worldSizeOf,
  type RoundEnded,
  type RoundPlan,
} from './rendezvous.ts';
import { runRound } from './round.ts';

/** Why waiting for the rendezvous stopped: a signal to the launcher. */
class Stopped extends Error {}

export async function runElastic(ctx: LaunchContext, e: ElasticOptions): Promise<LaunchResult> {
  const opening = openAgentStore(ctx.o, ctx.token, e);
  const agent = await untilStopped(ctx, opening).catch((err: unknown) => {
    // Stopped while still connecting: whatever opens later is closed at once.
    void opening.then(
      (a) => a.close(),
      () => undefined,
    );
    if (err instanceof Stopped) return undefined;
    throw err;
  });
  if (!agent) return ctx.stopped(ctx.stoppedBy ?? 'SIGTERM', 0);
  const { store } = agent;
  const coordinating = agent.server ? startCoordinator(ctx, agent, e) : undefined;
  try {
    const me = {
      id: await store.add(keys.id, 1),
      host: store.localAddress ?? ctx.o.masterAddr,
      nproc: ctx.o.nprocPerNode,
    };
    if (coordinating) coordinating.selfId(me.id);
    ctx.say(
      `elastic rendezvous at ${agent.where} (nodes ${e.minNodes}:${e.maxNodes})` +
        (agent.server ? ': this launcher hosts the agent store' : ''),
    );
    let from = Number(await untilStopped(ctx, store.get(keys.open, FOREVER_MS)));
    if (from > 0) ctx.say(`round ${from - 1} is running; this node joins at the next re-formation`);
    let prev: RoundPlan | undefined;
    for (;;) {
      const result = await untilStopped(
        ctx,
        admission(store, me, from, (r) => ctx.say(`round ${r} formed without this node; waiting for the next one`)),
      );
      if ('ended' in result) return endedBeforeAdmission(ctx, result.ended, result.reason);
      ctx.say(roundLine(prev, result, me.id));
      const out = await runRound(ctx, store, result, me.id);
      if (out.kind === 'succeeded') {
        if (out.end.how !== 'done')
          ctx.say(`this node's workers finished; round ${result.round} ended: ${out.end.reason}`);
        return { exitCode: 0, outcome: 'succeeded', restarts: result.round };
      }
      if (out.kind === 'stopped') return ctx.stopped(out.signal, result.round);
      if (out.kind === 'lost') return masterGone(ctx, agent, out.failure, result.round);
      if (result.round >= ctx.o.maxRestarts) {
        const after = ctx.o.maxRestarts > 0 ? ` after ${result.round} re-formations` : '';
        ctx.say(`job failed${after}: round ${result.round} ended: ${out.end.reason}`);
        return failed(out.failure, result.round);
      }
      ctx.say(`round ${result.round} ended: ${out.end.reason}; re-forming the world for round ${result.round + 1}`);
      prev = result;
      from = result.round + 1;
    }
  } catch (err) {
    if (err instanceof Stopped) return ctx.stopped(ctx.stoppedBy ?? 'SIGTERM', 0);
    // The store's connection lost: its host, the master node's launcher, is gone.
    if (!(err instanceof PeerLostError)) throw err;
    return masterGone(ctx, agent, undefined, 0);
  } finally {
    // The host keeps the store up until its coordinator has told the waiting launchers the end.
    if (coordinating && !ctx.stoppedBy) await coordinating.done;
    await agent.close();
  }
}

/** One line per round: its number, its world size, and who left or joined since the last. */
function roundLine(prev: RoundPlan | undefined, plan: RoundPlan, myId: number): string {
  const mine = plan.members.findIndex((m) => m.id === myId);
  const head = `round ${plan.round}: world size ${worldSizeOf(plan)} on ${plan.members.length} nodes`;
  if (!prev) return `${head}; this is ${describeNode(plan, mine)}`;
  const ids = (p: RoundPlan) => new Set(p.members.map((m) => m.id));
  const [before, now] = [ids(prev), ids(plan)];
  const left = prev.members.flatMap((m, i) => (now.has(m.id) ? [] : [describeNode(prev, i)]));
  const joined = plan.members.flatMap((m, i) => (before.has(m.id) ? [] : [describeNode(plan, i)]));
  return (
    `${head} (was ${worldSizeOf(prev)})` +
    (left.length ? `; left: ${left.join(', ')}` : '') +
    (joined.length ? `; joined: ${joined.join(', ')}` : '') +
    `; this is ${describeNode(plan, mine)}`
  );
}

function endedBeforeAdmission(ctx: LaunchContext, how: RoundEnded['ended'], reason: string): LaunchResult {
  if (how === 'timeout') throw new ConfigError(reason);
  ctx.say(`round not formed: ${reason}`);
  return how === 'done' ? { exitCode: 0, outcome: 'succeeded', restarts: 0 } : failed(undefined, 0);
}

function masterGone(ctx: LaunchContext, agent: AgentStore, failure: WorkerExit | undefined, r: number): LaunchResult {
  ctx.say(`the master node's launcher is gone (lost the agent store at ${agent.where}): the job ends`);
  return failed(failure, r);
}

function failed(failure: WorkerExit | undefined, restarts: number): LaunchResult {
  return { exitCode: (failure && statusCode(failure)) || 1, outcome: 'failed', restarts, failure };
}

/** p, unless a signal to the launcher comes first. */
function untilStopped<T>(ctx: LaunchContext, p: Promise<T>): Promise<T> {
  const stop = ctx.stopRequested.then((): never => {
    throw new Stopped();
  });
  return Promise.race([p, stop]);
}

/** The coordinator, once this launcher knows its own agent id; a failure of it ends the job. */
function startCoordinator(ctx: LaunchContext, agent: AgentStore, e: ElasticOptions) {
  let give!: (id: number) => void;
  const selfId = new Promise<number>((resolve) => (give = resolve));
  const done = selfId
    .then((id) =>
      coordinate({ store: agent.store, e, maxRestarts: ctx.o.maxRestarts, masterAddr: ctx.o.masterAddr, selfId: id }),
    )
    .catch((err: unknown) => {
      if (!(err instanceof ZeroringError)) ctx.say(`the rendezvous coordinator failed: ${(err as Error).message}`);
    });
  return { selfId: give, done };
}
