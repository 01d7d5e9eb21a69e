// Model state as ranges of named parameters, so that state saved by N ranks under one strategy
// loads on M ranks under any other (torch Distributed Checkpoint's resharding on load). A rank
// saves the pieces it holds: a piece is a range of one parameter's row-major elements, and the
// rank's parameters and both AdamW moments over those pieces. A loading rank asks a StateSource
// for the ranges its own layout needs, and the source finds them among whichever pieces hold them.
// Details: docs/internals.md#state-source
import { paramCount, type ParamSpec } from './model.ts';
import { FlatPartition } from './partition.ts';
import { StrategyError, type ShardState } from './strategy.ts';
import type { StateKind, StatePiece, StateRequest, StateSource } from './state-types.ts';

export type { StateKind, StatePiece, StateRequest, StateSource } from './state-types.ts';
export const STATE_KINDS: readonly StateKind[] = ['param', 'm', 'v'];

/** A saved piece and where its values start in its holder's concatenated arrays. */
export interface HeldPiece extends StatePiece {
  at: number;
}

/** Rank's share of the parameters concatenated in order: an even cut, at element granularity. */
export function evenPieces(specs: readonly ParamSpec[], rank: number, worldSize: number): StatePiece[] {
  const total = specs.reduce((a, s) => a + paramCount(s), 0);
  const lo = Math.floor((rank * total) / worldSize);
  const hi = Math.floor(((rank + 1) * total) / worldSize);
  const out: StatePiece[] = [];
  let start = 0;
  for (const spec of specs) {
    const n = paramCount(spec);
    const a = Math.max(lo, start);
    const b = Math.min(hi, start + n);
    if (a < b) out.push({ name: spec.name, offset: a - start, length: b - a });
    start += n;
  }
  return out;
}

export function concatArrays(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * What a rank of a replicated strategy writes to a checkpoint: only its even share of the state
 * that every rank holds alike (saveState marks such state `replicated`); other state as it is.
 */
export function checkpointShare(state: ShardState, rank: number, worldSize: number): ShardState {
  if (state.meta.replicated !== true) return state;
  const params = state.meta.params as ParamSpec[];
  const pieces = evenPieces(params, rank, worldSize);
  const total = params.reduce((a, s) => a + paramCount(s), 0);
  const lo = Math.floor((rank * total) / worldSize);
  const hi = Math.floor(((rank + 1) * total) / worldSize);
  const arrays = new Map([...state.arrays].map(([k, a]) => [k, a.subarray(lo, hi)]));
  return { meta: { ...state.meta, replicated: false, worldSize, rank, pieces }, arrays };
}

/** Pieces with their offsets into the concatenation of their values. */
export function heldPieces(pieces: readonly StatePiece[]): HeldPiece[] {
  let at = 0;
  return pieces.map((p) => {
    const held = { name: p.name, offset: p.offset, length: p.length, at };
    at += p.length;
    return held;
  });
}

/** A part of a request that one held piece answers. */
export interface Cover<H> {
  holder: H;
  piece: HeldPiece;
  /** Element of the piece where the part starts, where it goes in the output, and its length. */
  from: number;
  into: number;
  length: number;
}

/** Indexes the pieces of several holders by parameter, and cuts requests into the parts they hold. */
export class PieceIndex<H> {
  private readonly byName = new Map<string, Array<{ holder: H; piece: HeldPiece }>>();

  add(holder: H, pieces: readonly HeldPiece[]): void {
    for (const piece of pieces) {
      const list = this.byName.get(piece.name) ?? [];
      list.push({ holder, piece });
      this.byName.set(piece.name, list);
    }
  }

  /** The parts of `req`; throws when some of its elements are held nowhere. */
  cover(req: StateRequest): Array<Cover<H>> {
    const out: Array<Cover<H>> = [];
    const list = this.byName.get(req.name) ?? [];
    const end = req.offset + req.length;
    let at = req.offset;
    while (at < end) {
      // Replicated saves hold some ranges several times: any holder of `at` will do.
      const hit = list.find(({ piece }) => piece.offset <= at && at < piece.offset + piece.length);
      if (!hit) {
        throw new StrategyError(
          `checkpoint holds no ${req.kind}/${req.name}[${at}] (needed ${req.offset}..${end - 1}): ` +
            'a different model, or an incomplete checkpoint',
        );
      }
      const length = Math.min(end, hit.piece.offset + hit.piece.length) - at;
      out.push({ ...hit, from: at - hit.piece.offset, into: at - req.offset, length });
      at += length;
    }
    return out;
  }
}

/**
 * Checks that a source holds the model being loaded: the same parameters with as many elements
 * each (first-format replicated shards recorded no shapes, only lengths).
 */
export function checkSourceModel(source: StateSource, specs: readonly ParamSpec[]): void {
  const saved = new Map(source.params.map((p) => [p.name, p]));
  for (const spec of specs) {
    const got = saved.get(spec.name);
    if (!got || paramCount(got) !== paramCount(spec)) {
      const what = got ? `shape [${got.shape.join(', ')}]` : 'no such parameter';
      throw new StrategyError(
        `checkpoint has ${what} for ${spec.name}, expected shape [${spec.shape.join(', ')}] (a different model?)`,
      );
    }
  }
}

// ---- state in memory: a strategy's own saveState(), or the shards of an old-format checkpoint ----

interface MemoryHolder {
  arrays: ReadonlyMap<string, Float32Array>;
  /** Old-format shards keep each parameter in an array of its own. */
  key: (kind: StateKind, name: string) => string;
}

/** The pieces and arrays of one saved state, in the current layout or an old one. */
function memoryHolder(state: ShardState): { holder: MemoryHolder; pieces: HeldPiece[] } {
  const { meta, arrays } = state;
  if (Array.isArray(meta.pieces)) {
    return { holder: { arrays, key: (kind) => kind }, pieces: heldPieces(meta.pieces as StatePiece[]) };
  }
  const layout = meta.layout as { groups: Array<{ name: string; params: ParamSpec[] }> } | undefined;
  if (layout) {
    // A ZeRO shard of the first format: its partition layout says which ranges it holds.
    const part = FlatPartition.fromGroups(layout.groups, Number(meta.worldSize));
    const pieces = part.pieces(Number(meta.rank)).map((p) => ({
      name: p.name,
      offset: p.paramOffset,
      length: p.length,
      at: p.shardOffset,
    }));
    return { holder: { arrays, key: (kind) => `shard/${kind}` }, pieces };
  }
  // A replicated shard of the first format: every parameter whole, one array each.
  const pieces: HeldPiece[] = [];
  for (const [key, a] of arrays) {
    if (key.startsWith('param/')) pieces.push({ name: key.slice('param/'.length), offset: 0, length: a.length, at: 0 });
  }
  return { holder: { arrays, key: (kind, name) => `${kind}/${name}` }, pieces };
}

/** Saved params of a state: its recorded list, or what its pieces cover (old formats). */
function paramsOf(states: readonly ShardState[]): ParamSpec[] {
  const recorded = states[0]?.meta.params;
  if (Array.isArray(recorded)) return recorded as ParamSpec[];
  const layout = states[0]?.meta.layout as { groups: Array<{ params: ParamSpec[] }> } | undefined;
  if (layout) return layout.groups.flatMap((g) => g.params);
  const out: ParamSpec[] = [];
  for (const [key, a] of states[0]?.arrays ?? []) {
    if (key.startsWith('param/')) out.push({ name: key.slice('param/'.length), shape: [a.length] });
  }
  return out;
}

/** A source over states held in memory (one rank's own, or every rank's of a checkpoint). */
export function memoryStateSource(states: readonly ShardState[]): StateSource {
  if (states.length === 0) throw new StrategyError('no saved state to load from, expected one per rank');
  const index = new PieceIndex<MemoryHolder>();
  for (const state of states) {
    const { holder, pieces } = memoryHolder(state);
    index.add(holder, pieces);
  }
  const meta = states[0].meta;
  const t = meta.t;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) {
    throw new StrategyError(`checkpoint optimizer step ${String(t)} is invalid, expected an integer >= 0`);
  }
  const params = paramsOf(states);
  return {
    t,
    params,
    savedBy: { strategy: String(meta.strategy), worldSize: Number(meta.worldSize ?? states.length) },
    bytesRead: 0,
    read: async (requests) =>
      requests.map((req) => {
        const out = new Float32Array(req.length);
        for (const c of index.cover(req)) {
          const a = c.holder.arrays.get(c.holder.key(req.kind, req.name));
          const start = c.piece.at + c.from;
          if (!a || start + c.length > a.length) {
            throw new StrategyError(`checkpoint lacks ${req.kind}/${req.name} values for the range it lists`);
          }
          out.set(a.subarray(start, start + c.length), c.into);
        }
        return out;
      }),
  };
}

/** The requests for whole parameters, every kind: what a replicated strategy loads. */
export function wholeParamRequests(specs: readonly ParamSpec[]): StateRequest[] {
  return specs.flatMap((s) => STATE_KINDS.map((kind) => ({ kind, name: s.name, offset: 0, length: paramCount(s) })));
}
