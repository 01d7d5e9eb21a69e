// One flat partitioning of a model's unique parameters, shared by ZeRO-1, ZeRO-2 and ZeRO-3: a
// group per block (first-use order), each padded to a multiple of N, rank r owning the r-th 1/N of
// every group. So every per-block collective is one equal-split all-gather or reduce-scatter, and a
// gathered group is already in its full layout; the price is at most N-1 padding elements a block.
// Details: docs/internals.md#partition
import { uniqueParams, paramCount, type BlockModel, type ParamSpec } from './model.ts';

export class PartitionError extends Error {
  constructor(what: string, value: unknown, expected: string) {
    super(`partition: ${what} = ${String(value)}, expected ${expected}`);
    this.name = 'PartitionError';
  }
}

export interface ParamSlot {
  name: string;
  shape: number[];
  numel: number;
  /** Index of the group holding this parameter. */
  group: number;
  /** First element in the full flat buffer. */
  offset: number;
}

export interface PartitionGroup {
  index: number;
  /** Name of the block that introduces these parameters (or the caller's group name). */
  name: string;
  params: string[];
  /** First element of the group in the full flat buffer. */
  offset: number;
  /** Real elements (sum of its params' sizes). */
  length: number;
  /** length rounded up to a multiple of worldSize; padding is at the end and holds zeros. */
  paddedLength: number;
  /** paddedLength / worldSize: what each rank owns of this group. */
  shardLength: number;
  /** Where this group's slice starts inside every rank's shard. */
  shardOffset: number;
}

/** A contiguous run of one parameter's elements that lies in one rank's shard. */
export interface ShardPiece {
  name: string;
  /** First element within the parameter (row-major flattening). */
  paramOffset: number;
  length: number;
  /** First element within the rank's shard. */
  shardOffset: number;
  /** First element within the full flat buffer. */
  flatOffset: number;
}

export interface GroupInput {
  name: string;
  params: ParamSpec[];
}

export class FlatPartition {
  readonly worldSize: number;
  readonly groups: readonly PartitionGroup[];
  readonly params: readonly ParamSlot[];
  /** Real parameter elements (tied counted once). */
  readonly numel: number;
  /** Full flat buffer length: sum of padded group lengths, a multiple of worldSize. */
  readonly totalLength: number;
  /** Elements each rank owns: totalLength / worldSize. */
  readonly shardLength: number;
  /** For fromModel: the groups block b reads, ascending (its own and those of tied params). */
  readonly blockGroups: readonly number[][];
  private readonly byName: Map<string, ParamSlot>;

  private constructor(groups: GroupInput[], worldSize: number, blockReads: string[][]) {
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new PartitionError('worldSize', worldSize, 'an integer >= 1');
    this.worldSize = worldSize;
    this.byName = new Map();
    const outGroups: PartitionGroup[] = [];
    const slots: ParamSlot[] = [];
    let offset = 0;
    let shardOffset = 0;
    for (const [index, gi] of groups.entries()) {
      let length = 0;
      const names: string[] = [];
      for (const spec of gi.params) {
        if (this.byName.has(spec.name))
          throw new PartitionError('parameter name', spec.name, 'each parameter once across all groups');
        for (const d of spec.shape) {
          if (!Number.isInteger(d) || d < 0)
            throw new PartitionError(
              `shape of ${spec.name}`,
              `[${spec.shape.join(', ')}]`,
              'non-negative integer dimensions',
            );
        }
        const numel = paramCount(spec);
        const slot: ParamSlot = {
          name: spec.name,
          shape: [...spec.shape],
          numel,
          group: index,
          offset: offset + length,
        };
        this.byName.set(spec.name, slot);
        slots.push(slot);
        names.push(spec.name);
        length += numel;
      }
      const paddedLength = Math.ceil(length / worldSize) * worldSize;
      const shardLength = paddedLength / worldSize;
      outGroups.push({ index, name: gi.name, params: names, offset, length, paddedLength, shardLength, shardOffset });
      offset += paddedLength;
      shardOffset += shardLength;
    }
    this.groups = outGroups;
    this.params = slots;
    this.numel = slots.reduce((a, s) => a + s.numel, 0);
    this.totalLength = offset;
    this.shardLength = shardOffset;
    this.blockGroups = blockReads.map((names) =>
      [...new Set(names.map((n) => this.slot(n).group))].sort((a, b) => a - b),
    );
  }

  /** A group per block, holding the parameters that block uses first (tied parameters once). */
  static fromModel(model: BlockModel, worldSize: number): FlatPartition {
    const seen = new Set<string>();
    const groups: GroupInput[] = model.blocks.map((block) => {
      const fresh: ParamSpec[] = [];
      for (const p of block.params) {
        if (!seen.has(p.name)) {
          seen.add(p.name);
          fresh.push(p);
        }
      }
      return { name: block.name, params: fresh };
    });
    const unique = uniqueParams(model);
    const byName = new Map(unique.map((p) => [p.name, p]));
    for (const block of model.blocks) {
      for (const p of block.params) {
        const first = byName.get(p.name)!;
        if (first.shape.join(',') !== p.shape.join(',')) {
          throw new PartitionError(
            `shape of tied parameter ${p.name} in block ${block.name}`,
            `[${p.shape.join(', ')}]`,
            `[${first.shape.join(', ')}] as where it is first used`,
          );
        }
      }
    }
    return new FlatPartition(
      groups,
      worldSize,
      model.blocks.map((b) => b.params.map((p) => p.name)),
    );
  }

  /** Explicit groups (e.g. buckets); blockGroups is empty. */
  static fromGroups(groups: GroupInput[], worldSize: number): FlatPartition {
    return new FlatPartition(groups, worldSize, []);
  }

  /** All parameters in one group: the plain "flat buffer padded to a multiple of N" layout. */
  static fromParams(params: ParamSpec[], worldSize: number): FlatPartition {
    return new FlatPartition([{ name: 'all', params }], worldSize, []);
  }

  slot(name: string): ParamSlot {
    const s = this.byName.get(name);
    if (!s) throw new PartitionError('parameter name', name, `one of ${this.params.length} partitioned parameters`);
    return s;
  }

  /** [offset, length] of a parameter in the full flat buffer. */
  range(name: string): [number, number] {
    const s = this.slot(name);
    return [s.offset, s.numel];
  }

  private checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize)
      throw new PartitionError('rank', rank, `an integer in [0, ${this.worldSize - 1}]`);
  }

  /** [flatOffset, length] of rank's slice of group g in the full flat buffer. */
  groupShardRange(g: number, rank: number): [number, number] {
    this.checkRank(rank);
    const grp = this.groups[g];
    if (!grp) throw new PartitionError('group', g, `an index in [0, ${this.groups.length - 1}]`);
    return [grp.offset + rank * grp.shardLength, grp.shardLength];
  }

  /** The pieces of each parameter that fall in rank's shard, in shard order. */
  pieces(rank: number): ShardPiece[] {
    this.checkRank(rank);
    const out: ShardPiece[] = [];
    for (const g of this.groups) {
      const lo = g.offset + rank * g.shardLength;
      const hi = lo + g.shardLength;
      for (const name of g.params) {
        const s = this.byName.get(name)!;
        const start = Math.max(lo, s.offset);
        const end = Math.min(hi, s.offset + s.numel);
        if (start < end) {
          out.push({
            name,
            paramOffset: start - s.offset,
            length: end - start,
            shardOffset: g.shardOffset + (start - lo),
            flatOffset: start,
          });
        }
      }
    }
    return out;
  }

  /** Shard ranges [start, end) holding parameters that `decays` selects (default: matrices, as nanoGPT). */
  decayRanges(rank: number, decays: (p: ParamSlot) => boolean = (p) => p.shape.length >= 2): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const piece of this.pieces(rank)) {
      if (!decays(this.byName.get(piece.name)!)) continue;
      const last = out[out.length - 1];
      if (last && last[1] === piece.shardOffset) last[1] += piece.length;
      else out.push([piece.shardOffset, piece.shardOffset + piece.length]);
    }
    return out;
  }

  private checkValue(name: string, value: Float32Array | undefined): Float32Array {
    const s = this.slot(name);
    if (!value) throw new PartitionError(`value of ${name}`, 'missing', `a Float32Array of ${s.numel} elements`);
    if (value.length !== s.numel)
      throw new PartitionError(`length of ${name}`, value.length, `${s.numel} (shape [${s.shape.join(', ')}])`);
    return value;
  }

  private checkLength(what: string, buf: Float32Array, expected: number): void {
    if (buf.length !== expected) throw new PartitionError(`length of ${what}`, buf.length, String(expected));
  }

  /** Values → full flat buffer (padding zeroed). Every partitioned parameter must be present. */
  flatten(
    values: ReadonlyMap<string, Float32Array>,
    out: Float32Array = new Float32Array(this.totalLength),
  ): Float32Array {
    this.checkLength('flat output', out, this.totalLength);
    for (const g of this.groups) out.fill(0, g.offset + g.length, g.offset + g.paddedLength);
    for (const s of this.params) out.set(this.checkValue(s.name, values.get(s.name)), s.offset);
    return out;
  }

  /** Full flat buffer → values; views into `flat` unless copy is true. */
  unflatten(flat: Float32Array, opts: { copy?: boolean } = {}): Map<string, Float32Array> {
    this.checkLength('flat buffer', flat, this.totalLength);
    const out = new Map<string, Float32Array>();
    for (const s of this.params) {
      const view = flat.subarray(s.offset, s.offset + s.numel);
      out.set(s.name, opts.copy ? view.slice() : view);
    }
    return out;
  }

  /** Rank's shard, cut from the full flat buffer. */
  shard(flat: Float32Array, rank: number, out: Float32Array = new Float32Array(this.shardLength)): Float32Array {
    this.checkRank(rank);
    this.checkLength('flat buffer', flat, this.totalLength);
    this.checkLength('shard output', out, this.shardLength);
    for (const g of this.groups) {
      const lo = g.offset + rank * g.shardLength;
      out.set(flat.subarray(lo, lo + g.shardLength), g.shardOffset);
    }
    return out;
  }

  /** Full flat buffer assembled from every rank's shard (the inverse of shard()). */
  unshard(shards: readonly Float32Array[], out: Float32Array = new Float32Array(this.totalLength)): Float32Array {
    if (shards.length !== this.worldSize)
      throw new PartitionError('number of shards', shards.length, `${this.worldSize} (one per rank)`);
    this.checkLength('flat output', out, this.totalLength);
    shards.forEach((sh, r) => {
      this.checkLength(`shard ${r}`, sh, this.shardLength);
      for (const g of this.groups)
        out.set(sh.subarray(g.shardOffset, g.shardOffset + g.shardLength), g.offset + r * g.shardLength);
    });
    return out;
  }

  /** Rank's shard straight from values, without building the full buffer (padding zeroed). */
  shardFromValues(
    values: ReadonlyMap<string, Float32Array>,
    rank: number,
    out: Float32Array = new Float32Array(this.shardLength),
  ): Float32Array {
    this.checkLength('shard output', out, this.shardLength);
    out.fill(0);
    for (const p of this.pieces(rank)) {
      const v = this.checkValue(p.name, values.get(p.name));
      out.set(v.subarray(p.paramOffset, p.paramOffset + p.length), p.shardOffset);
    }
    return out;
  }

  /** Views of group g's parameters inside a buffer holding that group's full (gathered) layout. */
  groupViews(g: number, gathered: Float32Array): Map<string, Float32Array> {
    const grp = this.groups[g];
    if (!grp) throw new PartitionError('group', g, `an index in [0, ${this.groups.length - 1}]`);
    this.checkLength(`gathered group ${grp.name}`, gathered, grp.paddedLength);
    const out = new Map<string, Float32Array>();
    for (const name of grp.params) {
      const s = this.byName.get(name)!;
      const at = s.offset - grp.offset;
      out.set(name, gathered.subarray(at, at + s.numel));
    }
    return out;
  }
}
