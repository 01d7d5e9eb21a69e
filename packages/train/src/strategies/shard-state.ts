// A ZeRO rank's checkpoint (its parameter shard, moments and step count, plus the partition
// layout) and the reverse direction, DeepSpeed's zero_to_fp32: consolidateShards rebuilds the
// full parameters from every rank's shard without the model, because each shard records the
// layout that cut it.
import type { ParamSpec } from '../model.ts';
import { FlatPartition } from '../partition.ts';
import { StrategyError, type ShardState } from '../strategy.ts';

/** The partition layout a shard file records, so shards can be merged without the model. */
export interface ShardLayout {
  groups: Array<{ name: string; params: ParamSpec[] }>;
}

/** The partition's layout, as recorded in shard files. */
export function layoutOf(part: FlatPartition): ShardLayout {
  const specOf = (name: string): ParamSpec => ({ name, shape: [...part.slot(name).shape] });
  return { groups: part.groups.map((g) => ({ name: g.name, params: g.params.map(specOf) })) };
}

/** What a restoring rank expects of its shard. */
export interface ExpectedShard {
  strategy: string;
  worldSize: number;
  rank: number;
  shardLength: number;
}

/**
 * Checks that `state` is this rank's shard of a run like this one; returns its optimizer step
 * and a getter of its arrays (each checked for the shard length).
 */
export function checkShardState(
  state: ShardState,
  want: ExpectedShard,
): { t: number; array: (key: string) => Float32Array } {
  const { meta } = state;
  const fail = (msg: string): never => {
    throw new StrategyError(msg);
  };
  if (meta.strategy !== want.strategy) {
    fail(`checkpoint shard is for strategy "${String(meta.strategy)}", expected "${want.strategy}"`);
  }
  if (meta.worldSize !== want.worldSize) {
    fail(
      `checkpoint shard was saved by ${String(meta.worldSize)} ranks, expected ${want.worldSize} ` +
        '(resume with the same --nproc, or consolidate it)',
    );
  }
  if (meta.rank !== want.rank) fail(`checkpoint shard is rank ${String(meta.rank)}'s, expected rank ${want.rank}'s`);
  if (meta.shardLength !== want.shardLength) {
    fail(`checkpoint shard length ${String(meta.shardLength)}, expected ${want.shardLength} (a different model?)`);
  }
  const t = meta.t;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) {
    fail(`checkpoint optimizer step ${String(t)} is invalid, expected an integer >= 0`);
  }
  const array = (k: string): Float32Array => {
    const a = state.arrays.get(k);
    if (!a || a.length !== want.shardLength) {
      fail(`checkpoint shard lacks ${k} with ${want.shardLength} values (got ${a?.length ?? 'none'})`);
    }
    return a!;
  };
  return { t: t as number, array };
}

/**
 * The full parameters from every rank's saved shard of a ZeRO run (DeepSpeed's zero_to_fp32):
 * the recorded layout rebuilds the partition, which puts the shards back together. `states`
 * are the shard files of ranks 0..N-1 in order.
 */
export function consolidateShards(states: readonly ShardState[]): Map<string, Float32Array> {
  const N = states.length;
  if (N === 0) throw new StrategyError('consolidate: no shards, expected one per rank');
  const layout = states[0].meta.layout as ShardLayout | undefined;
  if (!layout || !Array.isArray(layout.groups)) {
    throw new StrategyError(
      `consolidate: shard of strategy "${String(states[0].meta.strategy)}" records no partition layout, ` +
        'expected a ZeRO (zero1/zero2/zero3) shard',
    );
  }
  states.forEach((s, r) => {
    if (s.meta.rank !== r) {
      throw new StrategyError(`consolidate: shard ${r} is rank ${String(s.meta.rank)}'s, expected rank ${r}'s`);
    }
    if (s.meta.worldSize !== N) {
      throw new StrategyError(
        `consolidate: shard ${r} was saved by ${String(s.meta.worldSize)} ranks, expected ${N} (one shard per rank)`,
      );
    }
  });
  const part = FlatPartition.fromGroups(layout.groups, N);
  const shards = states.map((s, r) => {
    const a = s.arrays.get('shard/param');
    if (!a || a.length !== part.shardLength) {
      throw new StrategyError(
        `consolidate: shard ${r} lacks shard/param with ${part.shardLength} values (got ${a?.length ?? 'none'})`,
      );
    }
    return a;
  });
  return part.unflatten(part.unshard(shards), { copy: true });
}
