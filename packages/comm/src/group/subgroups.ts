// What a process group hands down to the groups it creates (newGroup), and the checks and ring
// setup of a new one. A subgroup is a group of its own: its ranks are numbered 0..k-1 in the
// order given, it has its own ring (its own listener and links, set up through the rendezvous
// store under a prefix of its own), so its collectives run concurrently with the parent's and
// with other subgroups'. It shares the job's failure (job-failure.ts) with everything else.
// Details: docs/internals.md#subgroups
import type { Logger } from '@zeroring/core';
import { ConfigError } from '../errors.ts';
import type { AddressBook } from '../transport/address-book.ts';
import { RingTransport } from '../transport/ring.ts';
import type { JobFailure } from './job-failure.ts';

/** How a group reaches the job's network: the store, where to listen, and the shared failure. */
export interface GroupNet {
  store: AddressBook;
  /** This group's store keys start with it. */
  prefix: string;
  bindHost: string;
  advertiseHost: string;
  job: JobFailure;
  /** The node index of every rank of the job (world numbering): which links leave a node. */
  nodeOf: readonly number[];
}

/** The ranks of a new group as given, checked: distinct ranks of the parent, at least one. */
export function checkGroupRanks(ranks: unknown, worldSize: number): number[] {
  const ok = (r: unknown) => Number.isInteger(r) && (r as number) >= 0 && (r as number) < worldSize;
  if (!Array.isArray(ranks) || ranks.length === 0) {
    throw new ConfigError(`newGroup: ranks=${JSON.stringify(ranks)}, expected a non-empty array of ranks`);
  }
  const bad = ranks.find((r) => !ok(r));
  if (bad !== undefined) {
    throw new ConfigError(`newGroup: rank ${JSON.stringify(bad)} is out of range, expected 0..${worldSize - 1}`);
  }
  const twice = ranks.find((r, i) => ranks.indexOf(r) !== i);
  if (twice !== undefined) throw new ConfigError(`newGroup: rank ${twice} is listed twice, expected distinct ranks`);
  return [...(ranks as number[])];
}

export interface SubRingOptions {
  net: GroupNet;
  rank: number;
  worldSize: number;
  token: string;
  timeoutMs: number;
  sharedMemory: boolean;
  chunkBytes: number;
  log: Logger;
}

/** The subgroup's ring among its members; a failure of the job meanwhile ends the wait. */
export async function connectSubRing(o: SubRingOptions): Promise<RingTransport> {
  const { net } = o;
  if (net.job.error) throw net.job.error;
  let leave = (): void => undefined;
  const abort = new Promise<never>((_, reject) => (leave = net.job.join(reject)));
  abort.catch(() => undefined);
  try {
    return await RingTransport.establish({
      rank: o.rank,
      worldSize: o.worldSize,
      token: o.token,
      store: net.store,
      prefix: net.prefix,
      bindHost: net.bindHost,
      advertiseHost: net.advertiseHost,
      timeoutMs: o.timeoutMs,
      log: o.log,
      abort,
      sharedMemory: o.sharedMemory,
      chunkBytes: o.chunkBytes,
    });
  } finally {
    leave();
  }
}
