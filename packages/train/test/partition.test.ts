import { describe, expect, it } from 'vitest';
import { FlatPartition, PartitionError } from '../src/partition.ts';
import type { BlockModel, ParamSpec } from '../src/model.ts';

// A parameter-layout-only model: the partition reads block names and param specs, never runs it.
function specModel(blocks: Array<[string, ParamSpec[]]>): BlockModel {
  return {
    blocks: blocks.map(([name, params]) => ({
      name,
      params,
      forward: () => {
        throw new Error('layout-only test model');
      },
    })),
    loss: () => {
      throw new Error('layout-only test model');
    },
    initParams: () => new Map(),
  };
}

/** Values where every element is distinct and identifies its parameter and index. */
function distinctValues(specs: ParamSpec[], seed = 1): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  specs.forEach((s, k) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    out.set(
      s.name,
      Float32Array.from({ length: n }, (_, i) => seed * 1000 + k * 100 + i + 0.5),
    );
  });
  return out;
}

// Awkward sizes: empty, one element, primes, a block with no params of its own.
const awkward: Array<[string, ParamSpec[]]> = [
  [
    'embed',
    [
      { name: 'wte', shape: [7, 3] },
      { name: 'wpe', shape: [5, 3] },
    ],
  ],
  [
    'h0',
    [
      { name: 'h0.w', shape: [13] },
      { name: 'h0.empty', shape: [0] },
      { name: 'h0.b', shape: [1] },
    ],
  ],
  ['h1', [{ name: 'h1.w', shape: [2, 1, 11] }]],
  ['nothing', []],
  [
    'head',
    [
      { name: 'ln', shape: [3] },
      { name: 'wte', shape: [7, 3] },
    ],
  ],
];
const allSpecs = (): ParamSpec[] => {
  const seen = new Map<string, ParamSpec>();
  for (const [, ps] of awkward) for (const p of ps) if (!seen.has(p.name)) seen.set(p.name, p);
  return [...seen.values()];
};

describe('FlatPartition', () => {
  for (const N of [1, 2, 3, 4]) {
    describe(`N=${N}`, () => {
      const part = FlatPartition.fromModel(specModel(awkward), N);
      const specs = allSpecs();

      it('pads every group to a multiple of N and gives every rank an equal shard', () => {
        expect(part.numel).toBe(21 + 15 + 13 + 0 + 1 + 22 + 3);
        expect(part.totalLength % N).toBe(0);
        expect(part.shardLength * N).toBe(part.totalLength);
        let offset = 0;
        let shardOffset = 0;
        for (const g of part.groups) {
          expect(g.offset).toBe(offset);
          expect(g.shardOffset).toBe(shardOffset);
          expect(g.paddedLength % N).toBe(0);
          expect(g.paddedLength).toBeGreaterThanOrEqual(g.length);
          expect(g.paddedLength - g.length).toBeLessThan(N);
          expect(g.shardLength * N).toBe(g.paddedLength);
          offset += g.paddedLength;
          shardOffset += g.shardLength;
        }
        expect(part.groups.map((g) => g.params)).toEqual([
          ['wte', 'wpe'],
          ['h0.w', 'h0.empty', 'h0.b'],
          ['h1.w'],
          [],
          ['ln'],
        ]);
      });

      it('places tied parameters once, in the group of their first use, and blockGroups finds them', () => {
        expect(part.slot('wte').group).toBe(0);
        expect(part.range('wte')).toEqual([0, 21]);
        expect(part.blockGroups).toEqual([[0], [1], [2], [], [0, 4]]);
      });

      it('pieces cover every element of every parameter exactly once, across ranks', () => {
        const seen = new Map(specs.map((s) => [s.name, new Uint8Array(part.slot(s.name).numel)]));
        const shardSeen = Array.from({ length: N }, () => new Uint8Array(part.shardLength));
        for (let r = 0; r < N; r++) {
          for (const p of part.pieces(r)) {
            expect(p.length).toBeGreaterThan(0);
            expect(p.flatOffset).toBe(part.slot(p.name).offset + p.paramOffset);
            for (let i = 0; i < p.length; i++) {
              seen.get(p.name)![p.paramOffset + i]!++;
              shardSeen[r]![p.shardOffset + i]!++;
            }
          }
        }
        for (const [, marks] of seen) expect([...marks].every((c) => c === 1)).toBe(true);
        // Shard elements not covered by a piece are padding; none is covered twice.
        for (const marks of shardSeen) expect([...marks].every((c) => c <= 1)).toBe(true);
        const padding = part.totalLength - part.numel;
        const uncovered = shardSeen.reduce((a, m) => a + m.filter((c) => c === 0).length, 0);
        expect(uncovered).toBe(padding);
      });

      it('flatten/unflatten and shard/unshard round-trip, and shardFromValues agrees with shard(flatten)', () => {
        const values = distinctValues(specs);
        const flat = part.flatten(values);
        for (const g of part.groups)
          for (let i = g.offset + g.length; i < g.offset + g.paddedLength; i++) expect(flat[i]).toBe(0);
        const back = part.unflatten(flat, { copy: true });
        for (const s of specs) expect(back.get(s.name)).toEqual(values.get(s.name));
        const shards = Array.from({ length: N }, (_, r) => part.shard(flat, r));
        for (let r = 0; r < N; r++) expect(part.shardFromValues(values, r)).toEqual(shards[r]);
        expect(part.unshard(shards)).toEqual(flat);
        // Views by default: writing through them writes the flat buffer.
        part.unflatten(flat).get('h1.w')![4] = -1;
        expect(flat[part.slot('h1.w').offset + 4]).toBe(-1);
      });

      it('a group is one equal allGather: rank-major concatenation of shard slices is the group layout', () => {
        const values = distinctValues(specs, 2);
        const flat = part.flatten(values);
        const shards = Array.from({ length: N }, (_, r) => part.shardFromValues(values, r));
        for (const g of part.groups) {
          const gathered = new Float32Array(g.paddedLength);
          shards.forEach((sh, r) =>
            gathered.set(sh.subarray(g.shardOffset, g.shardOffset + g.shardLength), r * g.shardLength),
          );
          expect(gathered).toEqual(flat.subarray(g.offset, g.offset + g.paddedLength));
          for (const [name, view] of part.groupViews(g.index, gathered)) expect(view).toEqual(values.get(name));
          for (let r = 0; r < N; r++) {
            const [lo, len] = part.groupShardRange(g.index, r);
            expect(shards[r]!.subarray(g.shardOffset, g.shardOffset + len)).toEqual(flat.subarray(lo, lo + len));
          }
        }
      });

      it('a group is one equal reduceScatter: rank r gets the sum of its slice', () => {
        const perRank = Array.from({ length: N }, (_, k) => part.flatten(distinctValues(specs, k + 3)));
        const sum = new Float32Array(part.totalLength);
        for (const f of perRank) for (let i = 0; i < sum.length; i++) sum[i]! += f[i]!;
        for (let r = 0; r < N; r++) {
          const shard = new Float32Array(part.shardLength);
          for (const g of part.groups) {
            // reduceScatter input is the group's full layout; output chunk r goes to the shard slice.
            const out = shard.subarray(g.shardOffset, g.shardOffset + g.shardLength);
            for (const f of perRank) {
              const chunk = f.subarray(g.offset + r * g.shardLength, g.offset + (r + 1) * g.shardLength);
              for (let i = 0; i < out.length; i++) out[i]! += chunk[i]!;
            }
          }
          expect(shard).toEqual(part.shard(sum, r));
        }
      });

      it('decayRanges selects the shard elements of matrices only', () => {
        const flags = Array.from({ length: N }, () => new Uint8Array(part.shardLength));
        for (let r = 0; r < N; r++) {
          for (const [s, e] of part.decayRanges(r)) {
            expect(s).toBeLessThan(e);
            flags[r]!.fill(1, s, e);
          }
          for (const p of part.pieces(r)) {
            const isMatrix = part.slot(p.name).shape.length >= 2;
            for (let i = 0; i < p.length; i++) expect(flags[r]![p.shardOffset + i]).toBe(isMatrix ? 1 : 0);
          }
        }
        const decayed = flags.reduce((a, f) => a + f.reduce((x, y) => x + y, 0), 0);
        expect(decayed).toBe(21 + 15 + 22);
      });
    });
  }

  it('fromParams is one group: the plain flat layout padded to a multiple of N', () => {
    const specs: ParamSpec[] = [
      { name: 'a', shape: [5] },
      { name: 'b', shape: [2, 3] },
    ];
    const part = FlatPartition.fromParams(specs, 4);
    expect(part.totalLength).toBe(12);
    expect(part.shardLength).toBe(3);
    expect(part.range('b')).toEqual([5, 6]);
    expect(part.pieces(1)).toEqual([
      { name: 'a', paramOffset: 3, length: 2, shardOffset: 0, flatOffset: 3 },
      { name: 'b', paramOffset: 0, length: 1, shardOffset: 2, flatOffset: 5 },
    ]);
    expect(part.pieces(3)).toEqual([{ name: 'b', paramOffset: 4, length: 2, shardOffset: 0, flatOffset: 9 }]);
  });

  it('handles an empty model and more ranks than elements', () => {
    const empty = FlatPartition.fromParams([], 3);
    expect([empty.totalLength, empty.shardLength, empty.pieces(2)]).toEqual([0, 0, []]);
    const tiny = FlatPartition.fromParams([{ name: 'x', shape: [1] }], 4);
    expect([tiny.totalLength, tiny.shardLength]).toEqual([4, 1]);
    expect(tiny.pieces(0)).toHaveLength(1);
    for (const r of [1, 2, 3]) expect(tiny.pieces(r)).toEqual([]);
  });

  it('rejects bad input with errors that name the value and the expectation', () => {
    const specs: ParamSpec[] = [{ name: 'a', shape: [5] }];
    expect(() => FlatPartition.fromParams(specs, 0)).toThrow(/worldSize = 0, expected an integer >= 1/);
    expect(() => FlatPartition.fromParams(specs, 1.5)).toThrow(PartitionError);
    expect(() =>
      FlatPartition.fromGroups(
        [
          { name: 'g', params: specs },
          { name: 'h', params: specs },
        ],
        2,
      ),
    ).toThrow(/parameter name = a/);
    expect(() => FlatPartition.fromParams([{ name: 'n', shape: [-1] }], 2)).toThrow(/shape of n/);
    const part = FlatPartition.fromParams(specs, 2);
    expect(() => part.slot('zz')).toThrow(/parameter name = zz/);
    expect(() => part.pieces(2)).toThrow(/rank = 2, expected an integer in \[0, 1\]/);
    expect(() => part.flatten(new Map())).toThrow(/value of a = missing/);
    expect(() => part.flatten(new Map([['a', new Float32Array(4)]]))).toThrow(/length of a = 4, expected 5/);
    expect(() => part.shard(new Float32Array(5), 0)).toThrow(/length of flat buffer = 5, expected 6/);
    expect(() => part.unshard([new Float32Array(3)])).toThrow(/number of shards = 1/);
    const tiedBad = specModel([
      ['embed', [{ name: 'w', shape: [4, 2] }]],
      ['head', [{ name: 'w', shape: [2, 4] }]],
    ]);
    expect(() => FlatPartition.fromModel(tiedBad, 2)).toThrow(/tied parameter w in block head/);
  });
});
