// Pipeline schedules as data: GPipe and 1F1B checked for every small shape, broken schedules
// rejected with the fault and instruction named, timelines against the bubble and memory formulas.
import { describe, expect, it } from 'vitest';
import {
  ScheduleError,
  checkSchedule,
  gpipeSchedule,
  interleavedSchedule,
  oneFOneBSchedule,
  renderTimeline,
  simulateSchedule,
  stageProgram,
  type PipeInstr,
  type PipeSchedule,
} from '../src/pipeline/index.ts';

const SCHEDULES = { gpipe: gpipeSchedule, '1f1b': oneFOneBSchedule } as const;
const shapes = Array.from({ length: 5 }, (_, p) => Array.from({ length: 9 }, (_, m) => [p + 1, m + 1] as const)).flat();

const parse = (lane: string): PipeInstr[] =>
  lane.split(/\s+/).map((t) => ({ op: t[0] as 'F' | 'B', micro: Number(t.slice(1)) }));
const lanes = (...ls: string[]): PipeSchedule => ls.map(parse);

function faultOf(f: () => void): ScheduleError {
  try {
    f();
  } catch (e) {
    if (e instanceof ScheduleError) return e;
    throw e;
  }
  throw new Error('expected a ScheduleError, none thrown');
}

describe('pipeline schedules', () => {
  it('1F1B is Megatron non-interleaved order: P - s - 1 warm-up forwards, then F/B pairs, then the drain', () => {
    const s = oneFOneBSchedule(4, 6);
    expect(s.map((l) => l.map((i) => `${i.op}${i.micro}`).join(' '))).toEqual([
      'F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5',
      'F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5',
      'F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5',
      'F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5',
    ]);
    // Fewer micro-batches than warm-up slots: the warm-up is capped at M.
    expect(oneFOneBSchedule(4, 2)[0]!.map((i) => `${i.op}${i.micro}`)).toEqual(['F0', 'F1', 'B0', 'B1']);
    expect(gpipeSchedule(2, 3)[1]!.map((i) => `${i.op}${i.micro}`)).toEqual(['F0', 'F1', 'F2', 'B0', 'B1', 'B2']);
  });

  for (const [name, make] of Object.entries(SCHEDULES)) {
    it(`${name}: valid for P 1..5, M 1..9 under rendezvous and buffered sends`, () => {
      for (const [p, m] of shapes) {
        const s = make(p, m);
        expect(() => checkSchedule(s, p, m), `${name} P=${p} M=${m}`).not.toThrow();
        expect(() => checkSchedule(s, p, m, { comm: 'buffered' }), `${name} P=${p} M=${m}`).not.toThrow();
      }
    });

    it(`${name}: bubble (P-1)/(M+P-1) with bwd = 2 fwd and bwd = fwd; makespan (M+P-1)(f+b)`, () => {
      for (const [p, m] of shapes)
        for (const [f, b] of [
          [1, 2],
          [3, 3],
        ] as const)
          for (const comm of ['rendezvous', 'buffered'] as const) {
            const t = simulateSchedule(make(p, m), { fwdTime: f, bwdTime: b, comm });
            const at = `${name} P=${p} M=${m} f=${f} b=${b} ${comm}`;
            expect(t.bubble, at).toBeCloseTo((p - 1) / (m + p - 1), 12);
            expect(t.makespan, at).toBe((m + p - 1) * (f + b));
            expect(t.busy, at).toEqual(Array.from({ length: p }, () => m * (f + b)));
          }
    });
  }

  it('peak live activations per stage: M for GPipe, min(P - s, M) for 1F1B', () => {
    for (const [p, m] of shapes) {
      const g = simulateSchedule(gpipeSchedule(p, m), { fwdTime: 1, bwdTime: 2 });
      const o = simulateSchedule(oneFOneBSchedule(p, m), { fwdTime: 1, bwdTime: 2 });
      expect(g.peakLive).toEqual(Array.from({ length: p }, () => m));
      expect(o.peakLive).toEqual(Array.from({ length: p }, (_, s) => Math.min(p - s, m)));
    }
  });

  it('the timeline respects the data flow between stages, with unequal stage times', () => {
    const t = simulateSchedule(oneFOneBSchedule(3, 5), { fwdTime: [1, 3, 1], bwdTime: [2, 6, 2] });
    const at = (s: number, op: 'F' | 'B', m: number) => t.lanes[s]!.find((i) => i.op === op && i.micro === m)!;
    for (let m = 0; m < 5; m++) {
      expect(at(1, 'F', m).start).toBeGreaterThanOrEqual(at(0, 'F', m).end);
      expect(at(2, 'F', m).start).toBeGreaterThanOrEqual(at(1, 'F', m).end);
      expect(at(1, 'B', m).start).toBeGreaterThanOrEqual(at(2, 'B', m).end);
      expect(at(0, 'B', m).start).toBeGreaterThanOrEqual(at(1, 'B', m).end);
    }
    // The slow middle stage is never idle after its first forward arrives, until its backwards drain.
    expect(t.busy[1]).toBe(5 * 9);
    expect(t.makespan).toBe(1 + 5 * 9 + 2);
  });

  it('derives sends and receives from the op list, pairing F output with the next B input', () => {
    const prog = stageProgram(oneFOneBSchedule(2, 2), 0); // F0 F1 B0 B1
    const text = prog.map((p) =>
      p.kind === 'compute'
        ? `${p.op}${p.micro}`
        : p.ops.map((o) => `${o.dir}:${o.tensor}${o.micro}@${o.peer}`).join('+'),
    );
    expect(text).toEqual(['F0', 'send:act0@1', 'F1', 'send:act1@1+recv:grad0@1', 'B0', 'recv:grad1@1', 'B1']);
    expect(stageProgram(gpipeSchedule(1, 2), 0).every((p) => p.kind === 'compute')).toBe(true);
  });

  it('renders one lane per stage, boxes scaled by time and idle as dots', () => {
    const chart = renderTimeline(simulateSchedule(gpipeSchedule(2, 2), { fwdTime: 1, bwdTime: 2 }));
    expect(chart.split('\n')).toEqual([
      'stage 0 [F0][F1]............[B0    ][B1    ]',
      'stage 1 ....[F0][F1][B0    ][B1    ]........',
    ]);
    // A chart wider than asked for is drawn on a coarser scale.
    const wide = renderTimeline(simulateSchedule(gpipeSchedule(4, 9), { fwdTime: 1, bwdTime: 2 }), 60);
    for (const l of wide.split('\n')) expect(l.length).toBeLessThanOrEqual(60);
  });
});

describe('broken schedules are rejected, naming the instruction', () => {
  it('a missing backward', () => {
    const e = faultOf(() => checkSchedule(lanes('F0 F1 B0', 'F0 F1 B0 B1'), 2, 2));
    expect([e.fault, e.stage, e.index]).toEqual(['missing', 0, -1]);
    expect(e.message).toBe('pipeline schedule: stage 0 never runs B1');
  });

  it('a backward before its forward on the stage', () => {
    const e = faultOf(() => checkSchedule(lanes('F0 B1 F1 B0', 'F0 F1 B0 B1'), 2, 2));
    expect([e.fault, e.stage, e.index]).toEqual(['order', 0, 1]);
    expect(e.message).toMatch(/stage 0 instruction 1 \(B1\) comes before F1 on stage 0/);
  });

  it('a duplicate, an unknown op, a micro out of range, a wrong stage count', () => {
    expect(faultOf(() => checkSchedule(lanes('F0 F0 B0', 'F0 B0'), 2, 1)).fault).toBe('duplicate');
    const bad = [[{ op: 'X', micro: 0 }]] as unknown as PipeSchedule;
    expect(faultOf(() => checkSchedule(bad, 1, 1)).message).toMatch(/instruction 0 is \{"op":"X","micro":0\}/);
    expect(faultOf(() => checkSchedule(lanes('F0 F2 B0 B2'), 1, 2)).message).toMatch(/micro 2, expected < 2/);
    expect(faultOf(() => checkSchedule(lanes('F0 B0'), 2, 1)).message).toMatch(/1 stage lists, expected 2/);
    expect(faultOf(() => gpipeSchedule(0, 2)).message).toMatch(/stages = 0, expected an integer >= 1/);
  });

  it('an order that deadlocks: stage 0 waits for a gradient that needs its next forward', () => {
    // Each list alone is fine (every F before its B), but stage 1's F1 needs stage 0's F1, which
    // comes after stage 0's B0, which needs stage 1's B0, which comes after stage 1's F1.
    const s = lanes('F0 B0 F1 B1', 'F0 F1 B0 B1');
    for (const comm of ['rendezvous', 'buffered'] as const) {
      const e = faultOf(() => checkSchedule(s, 2, 2, { comm }));
      expect(e.fault).toBe('deadlock');
      expect(e.message).toMatch(/stage 0 at instruction 1 \(B0\) waits to recv grad of micro 0 from stage 1/);
      expect(e.message).toMatch(/stage 1 at instruction 1 \(F1\) waits to recv act of micro 1 from stage 0/);
    }
  });

  it('micro-batches in different orders on neighbouring stages (untagged FIFO channels)', () => {
    const e = faultOf(() => checkSchedule(lanes('F0 F1 B0 B1', 'F1 F0 B0 B1'), 2, 2));
    expect(e.fault).toBe('mismatch');
    expect(e.message).toMatch(/stage 1 instruction 0 \(F1\) would recv act of micro 1 from stage 0/);
    expect(e.message).toMatch(/stage 0's matching send is for act of micro 0 \(its instruction 0\)/);
  });

  it('1F1B needs the output send and the next input receive posted together under rendezvous sends', () => {
    // Unfused, stage 0 blocks sending act1 while stage 1 blocks sending grad0: each waits for a
    // receive the other posts only after its own send. GPipe never sends both ways at once.
    for (const [p, m] of shapes) {
      expect(() => checkSchedule(gpipeSchedule(p, m), p, m, { fuse: 'none' })).not.toThrow();
      expect(() => checkSchedule(oneFOneBSchedule(p, m), p, m, { comm: 'buffered', fuse: 'none' })).not.toThrow();
    }
    const e = faultOf(() => checkSchedule(oneFOneBSchedule(2, 2), 2, 2, { fuse: 'none' }));
    expect(e.fault).toBe('deadlock');
    expect(e.message).toMatch(/stage 0 at instruction 1 \(F1\) waits to send act of micro 1 to stage 1/);
    expect(e.message).toMatch(/stage 1 at instruction 1 \(B0\) waits to send grad of micro 0 to stage 0/);
  });
});

describe('interleaved 1F1B (virtual stages)', () => {
  const ishapes = [2, 3, 4].flatMap((p) => [2, 3].flatMap((v) => [1, 2, 3].map((k) => [p, k * p, v] as const)));

  it("follows Megatron's order: groups of P micro-batches per chunk, warm-up (P - s - 1)·2 + (V - 1)·P", () => {
    const s = interleavedSchedule(2, 4, 2);
    expect(s.map((l) => l.map((i) => `${i.op}${i.micro}${'ab'[i.chunk!]}${i.withNext ? '+' : ''}`).join(' '))).toEqual([
      'F0a F1a F0b F1b F2a+ B0b F3a+ B1b F2b+ B0a F3b+ B1a B2b B3b B2a B3a',
      'F0a F1a F0b+ B0b F1b+ B1b F2a+ B0a F3a+ B1a F2b+ B2b F3b+ B3b B2a B3a',
    ]);
  });

  it('valid for P 2..4, V 2..3, M = P, 2P, 3P; bubble (P-1)/(V·M+P-1) when a chunk takes 1/V of the time', () => {
    for (const [p, m, v] of ishapes)
      for (const comm of ['rendezvous', 'buffered'] as const) {
        const at = `P=${p} M=${m} V=${v} ${comm}`;
        const s = interleavedSchedule(p, m, v);
        expect(() => checkSchedule(s, p, m, { chunks: v, comm }), at).not.toThrow();
        const t = simulateSchedule(s, { fwdTime: 1 / v, bwdTime: 2 / v, comm });
        expect(t.bubble, at).toBeCloseTo((p - 1) / (v * m + p - 1), 12);
        expect(t.makespan, at).toBeCloseTo(((v * m + p - 1) * 3) / v, 12);
        // Live chunk forwards: the warm-up plus the steady state's one, or everything when M = P.
        const peak = Array.from({ length: p }, (_, st) =>
          m === p ? m * v : Math.min((p - st - 1) * 2 + (v - 1) * p + 1, m * v),
        );
        expect(t.peakLive, at).toEqual(peak);
      }
  });

  it('its steady-state F/B pairs need their sends and receives batched around the pair under rendezvous', () => {
    const s = interleavedSchedule(3, 6, 2);
    const unpaired = s.map((l) => l.map(({ withNext: _, ...i }) => i));
    expect(() => checkSchedule(unpaired, 3, 6, { chunks: 2, comm: 'buffered' })).not.toThrow();
    expect(faultOf(() => checkSchedule(unpaired, 3, 6, { chunks: 2 })).fault).toBe('deadlock');
  });

  it('rejects shapes it cannot interleave and lists that misuse chunks or withNext', () => {
    expect(faultOf(() => interleavedSchedule(2, 3, 2)).message).toMatch(/micro-batches = 3, expected a multiple of/);
    expect(faultOf(() => interleavedSchedule(1, 2, 2)).message).toMatch(/expected >= 2 to interleave/);
    const s = interleavedSchedule(2, 2, 2);
    expect(faultOf(() => checkSchedule(s, 2, 2)).message).toMatch(/chunk 1, expected none \(no interleaving\)/);
    const missing = [s[0]!.filter((i) => !(i.op === 'B' && i.micro === 1 && i.chunk === 0)), s[1]!];
    expect(faultOf(() => checkSchedule(missing, 2, 2, { chunks: 2 })).message).toMatch(/stage 0 never runs B1a/);
    const badPair = [[{ op: 'F', micro: 0, withNext: true }, { op: 'F', micro: 1 }, ...parse('B0 B1')]];
    expect(faultOf(() => checkSchedule(badPair as PipeSchedule, 1, 2)).message).toMatch(
      /instruction 0 \(F0\): withNext, expected only on an F followed by a B/,
    );
  });
});
