// The coordinator of the launchers' rendezvous, run by the launcher that hosts the agent store
// (the master node's): it forms each round from the arrivals (rendezvous.ts), waits for the
// round's end, and forms the next one until the job is done, failed, or out of re-formations.
//
// A round takes whoever arrived: once MIN nodes are there it waits the window for more, and
// closes at once when MAX are there (the master's own node always among them). A re-formation
// also closes at once when every member of the last round that is still connected has arrived,
// so losing a node costs no window. An arrival whose agent has gone (its will set `gone`) is
// dropped. Fewer than MIN nodes until the rendezvous timeout ends the job with a ConfigError
// line for every waiting launcher.
import type { StoreClient } from '../../store/client.ts';
import { freePort } from '../env.ts';
import type { ElasticOptions } from '../options.ts';
import {
  FOREVER_MS,
  keys,
  parse,
  type NodeRecord,
  type RoundEnd,
  type RoundEnded,
  type RoundPlan,
} from './rendezvous.ts';

/** How often a forming round looks at its arrivals (the store is in this process: cheap). */
const POLL_MS = 100;
/** An arrival number taken but never filled (its agent died in between) is skipped after this. */
const HOLE_MS = 2000;

export interface CoordinatorSpec {
  store: StoreClient;
  e: ElasticOptions;
  maxRestarts: number;
  masterAddr: string;
  /** This launcher's own agent id: its node is node 0 of every round. */
  selfId: number;
}

/** Runs the rounds to the job's end; the outcome goes to the agents through the store. */
export async function coordinate(c: CoordinatorSpec): Promise<void> {
  let prev: NodeRecord[] = [];
  for (let r = 0; ; r++) {
    await c.store.set(keys.open, r);
    const members = await collect(c, r, prev);
    if (!members) {
      const reason =
        `fewer than ${c.e.minNodes} nodes (the --nnodes minimum) joined round ${r} of the rendezvous at ` +
        `${c.masterAddr} within ${c.e.timeoutMs / 1000} s (expected at least ${c.e.minNodes} launchers ` +
        `with the same --master-addr, --master-port and ZERORING_TOKEN)`;
      return publishEnded(c.store, r, 'timeout', reason);
    }
    const plan: RoundPlan = { round: r, members: order(members, prev, c.selfId), port: await freePort(c.masterAddr) };
    await c.store.set(keys.result(r), JSON.stringify(plan));
    await c.store.set(keys.open, r + 1);
    prev = plan.members;
    const end = parse<RoundEnd>(await c.store.get(keys.end(r), FOREVER_MS));
    if (end.how === 'done') return publishEnded(c.store, r + 1, 'done', 'the job finished');
    if (r >= c.maxRestarts) {
      return publishEnded(c.store, r + 1, 'failed', `the job failed after ${r} re-formations: ${end.reason}`);
    }
  }
}

/** Tells the agents still waiting for round r (late arrivals) that there will be none. */
async function publishEnded(store: StoreClient, r: number, ended: RoundEnded['ended'], reason: string): Promise<void> {
  await store.set(keys.result(r), JSON.stringify({ round: r, ended, reason } satisfies RoundEnded));
}

/** The master first, then the last round's members in their order, then newcomers as they came. */
function order(members: NodeRecord[], prev: NodeRecord[], selfId: number): NodeRecord[] {
  const rank = (m: NodeRecord): number => {
    if (m.id === selfId) return -1;
    const i = prev.findIndex((p) => p.id === m.id);
    return i >= 0 ? i : prev.length + members.indexOf(m);
  };
  return [...members].sort((a, b) => rank(a) - rank(b));
}

/** The members of round r, or null when MIN nodes did not come within the timeout. */
async function collect(c: CoordinatorSpec, r: number, prev: NodeRecord[]): Promise<NodeRecord[] | null> {
  const { store, e } = c;
  const start = Date.now();
  const arrived = new Arrivals(store, r);
  let minAt: number | undefined;
  for (;;) {
    // Over MAX, the last round's members come before newcomers: a survivor is never left out.
    const here = order(await alive(store, await arrived.read()), prev, c.selfId);
    const taken = here.slice(0, e.maxNodes);
    const now = Date.now();
    const ready = taken.length >= e.minNodes && taken.some((m) => m.id === c.selfId);
    minAt = ready ? (minAt ?? now) : undefined;
    if (ready && here.length >= e.maxNodes) return taken;
    if (minAt !== undefined && (now - minAt >= e.windowMs || (await allBack(store, prev, taken)))) return taken;
    if (!ready && now - start >= e.timeoutMs) return null;
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

/** The arrivals of one round, read in order as they come. */
class Arrivals {
  private readonly all: NodeRecord[] = [];
  private next = 1;
  private holeSince: number | undefined;

  constructor(
    private readonly store: StoreClient,
    private readonly round: number,
  ) {}

  async read(): Promise<NodeRecord[]> {
    const n = await this.store.add(keys.arrivals(this.round), 0);
    while (this.next <= n) {
      const key = keys.arrival(this.round, this.next);
      if (await this.store.check([key])) this.all.push(parse<NodeRecord>(await this.store.get(key)));
      else if (Date.now() - (this.holeSince ??= Date.now()) < HOLE_MS) break;
      this.holeSince = undefined;
      this.next++;
    }
    return this.all;
  }
}

async function alive(store: StoreClient, nodes: NodeRecord[]): Promise<NodeRecord[]> {
  const gone = await Promise.all(nodes.map((m) => store.check([keys.gone(m.id)])));
  return nodes.filter((_, i) => !gone[i]);
}

/** Every member of the last round is here or gone: a re-formation need not wait the window. */
async function allBack(store: StoreClient, prev: NodeRecord[], taken: NodeRecord[]): Promise<boolean> {
  if (prev.length === 0) return false;
  const missing = prev.filter((p) => !taken.some((t) => t.id === p.id));
  const gone = await Promise.all(missing.map((m) => store.check([keys.gone(m.id)])));
  return gone.every(Boolean);
}
