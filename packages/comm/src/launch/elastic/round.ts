// One round of an elastic job on this node: start the local workers at the place the round
// gave this node, and wait for whichever comes first, the local group's end or the round's
// (rendezvous.ts `end`). A local failure ends the round for every node; the round's end, set
// elsewhere, stops the local workers. A node whose workers succeeded waits at the exit barrier
// until every member's have (or the round ends otherwise), so that the master's launcher keeps
// the store up for the others, as torchrun's agents do.
import type { StoreClient } from '../../store/client.ts';
import type { LaunchContext } from '../context.ts';
import { describeExit, WorkerGroup, type GroupResult, type WorkerExit } from '../worker-group.ts';
import {
  describeNode,
  FOREVER_MS,
  keys,
  parse,
  ranksOf,
  worldSizeOf,
  type RoundEnd,
  type RoundPlan,
} from './rendezvous.ts';

export type RoundOutcome =
  /** This node's workers succeeded; `end` says how the round ended (normally 'done'). */
  | { kind: 'succeeded'; end: RoundEnd }
  /** The round ended for a re-formation (a failure here or elsewhere, or a node left). */
  | { kind: 'ended'; end: RoundEnd; failure?: WorkerExit }
  | { kind: 'stopped'; signal: NodeJS.Signals }
  /** The agent store is gone: the master node's launcher died, which ends the job. */
  | { kind: 'lost'; error: Error; failure?: WorkerExit };

type First = { group: GroupResult } | { end: RoundEnd } | { lost: Error };

export async function runRound(
  ctx: LaunchContext,
  store: StoreClient,
  plan: RoundPlan,
  myId: number,
): Promise<RoundOutcome> {
  const r = plan.round;
  const index = plan.members.findIndex((m) => m.id === myId);
  const me = describeNode(plan, index);
  await store.will(keys.end(r), JSON.stringify({ how: 'left', reason: `${me} left (its launcher is gone)` }));
  const placement = { rankBase: ranksOf(plan, index)[0], worldSize: worldSizeOf(plan), nodeRank: index };
  const group = new WorkerGroup(ctx.specs({ ...placement, masterPort: plan.port, restartCount: r }), ctx.io);
  ctx.setGroup(group);
  if (ctx.stoppedBy) group.stop(ctx.stoppedBy); // a signal came while the round formed
  const ended: Promise<First> = store.get(keys.end(r), FOREVER_MS).then(
    (v) => ({ end: parse<RoundEnd>(v) }),
    (e: Error) => ({ lost: e }),
  );
  try {
    const first = await Promise.race([group.done.then((g): First => ({ group: g })), ended]);
    if ('group' in first) return await afterGroup(ctx, store, plan, me, first.group, ended);
    // The round ended elsewhere, or the store went away: this node's workers stop too.
    group.stop('SIGTERM');
    const local = await group.done;
    if ('lost' in first) return { kind: 'lost', error: first.lost, failure: local.failure };
    if (local.outcome === 'stopped' && ctx.stoppedBy) return { kind: 'stopped', signal: ctx.stoppedBy };
    return { kind: 'ended', end: first.end, failure: local.failure };
  } finally {
    ctx.setGroup(undefined);
  }
}

/** The local group ended first: tell the others how, then wait for the round's end. */
async function afterGroup(
  ctx: LaunchContext,
  store: StoreClient,
  plan: RoundPlan,
  me: string,
  g: GroupResult,
  ended: Promise<First>,
): Promise<RoundOutcome> {
  const r = plan.round;
  if (g.outcome === 'stopped' || ctx.stoppedBy) return { kind: 'stopped', signal: ctx.stoppedBy ?? 'SIGTERM' };
  if (g.outcome === 'succeeded') {
    await store.will(keys.end(r), null);
    const n = await store.add(keys.finished(r), 1);
    if (n === plan.members.length) await setEnd(store, r, { how: 'done', reason: 'every node finished' });
  } else {
    const f = g.failure!;
    await setEnd(store, r, { how: 'failed', reason: `rank ${f.rank} on ${me} failed with ${describeExit(f)}` });
  }
  const first = await ended;
  if ('lost' in first) return { kind: 'lost', error: first.lost, failure: g.failure };
  const end = (first as { end: RoundEnd }).end;
  return g.outcome === 'succeeded' ? { kind: 'succeeded', end } : { kind: 'ended', end, failure: g.failure };
}

/** The first reason to end a round stays: the others only follow from it. */
async function setEnd(store: StoreClient, r: number, end: RoundEnd): Promise<void> {
  if (!(await store.check([keys.end(r)]))) await store.set(keys.end(r), JSON.stringify(end));
}
