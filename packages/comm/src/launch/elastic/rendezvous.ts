// The launchers' rendezvous, as keys of the agent store (store/, hosted by the master node's
// launcher): what each key holds, and the agent's side of a round: arrive, then learn whether
// the round took this node. The coordinator (coordinator.ts) reads the arrivals and decides.
//
// Rounds are numbered from 0; a round's number is the restart count its workers see. An agent
// arrives at the round that `open` names, with its record under the next arrival number; a
// launcher that starts while a round runs thus arrives at the next one and waits, so a running
// round is never interrupted for it. A round's result lists its members in node order (the
// master node first), or says that the job ended. A round ends when `end` is set: by the last
// member to finish, by a member whose worker failed, or by the store itself, through the will
// of a member whose connection closed (a node that died).
import type { StoreClient } from '../../store/client.ts';

export const keys = {
  /** Counter: each agent's id, unique over the job. */
  id: 'elastic/id',
  /** The round that arrivals go to now. */
  open: 'elastic/open',
  arrivals: (r: number) => `elastic/${r}/n`,
  arrival: (r: number, i: number) => `elastic/${r}/a${i}`,
  result: (r: number) => `elastic/${r}/result`,
  end: (r: number) => `elastic/${r}/end`,
  finished: (r: number) => `elastic/${r}/finished`,
  /** Set by the will of an agent's connection: that agent is gone. */
  gone: (id: number) => `elastic/gone/${id}`,
} as const;

/** Longest a parked get may wait (setTimeout's limit): rounds last as long as training does. */
export const FOREVER_MS = 2 ** 31 - 1;

export interface NodeRecord {
  id: number;
  /** The node's address as the master sees it. */
  host: string;
  nproc: number;
}

export interface RoundPlan {
  round: number;
  members: NodeRecord[];
  /** The workers' own store port for this round (on the master node). */
  port: number;
}

/** No round r: the job finished or failed before it, or MIN nodes did not come in time. */
export interface RoundEnded {
  round: number;
  ended: 'done' | 'failed' | 'timeout';
  reason: string;
}

export type RoundResult = RoundPlan | RoundEnded;

export interface RoundEnd {
  how: 'done' | 'failed' | 'left';
  reason: string;
}

export function parse<T>(v: unknown): T {
  return JSON.parse(typeof v === 'string' ? v : String(v)) as T;
}

/** Global ranks of member `index` of a plan: [first, last]. */
export function ranksOf(plan: RoundPlan, index: number): [number, number] {
  const first = plan.members.slice(0, index).reduce((a, m) => a + m.nproc, 0);
  return [first, first + plan.members[index]!.nproc - 1];
}

export function worldSizeOf(plan: RoundPlan): number {
  return plan.members.reduce((a, m) => a + m.nproc, 0);
}

/** "node 2 (host 10.0.0.3, ranks 4-5)": a member as the launcher log names it. */
export function describeNode(plan: RoundPlan, index: number): string {
  const [a, b] = ranksOf(plan, index);
  return `node ${index} (host ${plan.members[index]!.host}, rank${a === b ? ` ${a}` : `s ${a}-${b}`})`;
}

/**
 * Arrives at rounds until one takes this node (or the job ends): a round that closed without it
 * (it came after the window, or while the round ran) sends it on to the next one.
 */
export async function admission(
  store: StoreClient,
  me: NodeRecord,
  from: number,
  onPassedOver: (round: number) => void,
): Promise<RoundResult> {
  for (let r = from; ; r++) {
    if (r > from) onPassedOver(r - 1);
    await store.will(keys.gone(me.id), 'gone');
    const i = await store.add(keys.arrivals(r), 1);
    await store.set(keys.arrival(r, i), JSON.stringify(me));
    const result = parse<RoundResult>(await store.get(keys.result(r), FOREVER_MS));
    if ('ended' in result || result.members.some((m) => m.id === me.id)) return result;
  }
}
