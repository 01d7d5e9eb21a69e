// TrainEvent helpers (src/events.ts): the per-rank split packing the trainer uses
// to gather every rank's numbers with one sum all-reduce, and the events.jsonl writer.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  packRankStep,
  unpackRankSteps,
  RANK_STEP_FIELDS,
  eventsFileWriter,
  EVENTS_FILE,
  isTrainEvent,
  totalBytes,
  type RankStep,
} from '@zeroring/train';

describe('per-rank split packing', () => {
  it("summing every rank's packed buffer yields all splits (what a sum all-reduce does)", () => {
    const world = 3;
    const splits: RankStep[] = [0, 1, 2].map((rank) => ({
      rank,
      computeMs: 10 + rank,
      commMs: 2.5 * rank,
      optimMs: 1,
      memory: { params: { device: 1000 * (rank + 1), host: 0 }, optimizer: { device: 0, host: 4096 } },
    }));
    const sum = new Float32Array(world * RANK_STEP_FIELDS);
    for (const s of splits) packRankStep(s, s.rank, world).forEach((v, i) => (sum[i] += v));
    const back = unpackRankSteps(sum, world);
    for (const s of splits) {
      expect(back[s.rank]).toMatchObject({
        rank: s.rank,
        computeMs: s.computeMs,
        commMs: s.commMs,
        optimMs: s.optimMs,
      });
      expect(back[s.rank].memory.params).toEqual(s.memory.params);
      expect(back[s.rank].memory.optimizer).toEqual({ device: 0, host: 4096 });
      expect(back[s.rank].memory.grads).toEqual({ device: 0, host: 0 });
      expect(totalBytes(back[s.rank].memory)).toBe(1000 * (s.rank + 1) + 4096);
    }
  });

  it('names bad ranks and sizes', () => {
    expect(() => packRankStep({ computeMs: 0, commMs: 0, optimMs: 0, memory: {} }, 2, 2)).toThrow(
      'rank 2 is invalid: expected an integer 0..1',
    );
    expect(() => unpackRankSteps(new Float32Array(5), 2)).toThrow(
      `packed rank split has 5 numbers: expected 2 * ${RANK_STEP_FIELDS}`,
    );
  });
});

describe('eventsFileWriter', () => {
  it('writes one JSON event per line, truncating unless resuming', () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zr-ev-')), 'run');
    const w = eventsFileWriter(dir);
    w({ type: 'val', step: 0, valLoss: 4.2 });
    w({ type: 'sample', step: 1, text: 'a\nb' });
    const read = () =>
      fs
        .readFileSync(path.join(dir, EVENTS_FILE), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown);
    expect(read()).toEqual([
      { type: 'val', step: 0, valLoss: 4.2 },
      { type: 'sample', step: 1, text: 'a\nb' },
    ]);
    expect(read().every(isTrainEvent)).toBe(true);
    eventsFileWriter(dir, { truncate: false })({ type: 'done', summary: {} });
    expect(read()).toHaveLength(3);
    eventsFileWriter(dir);
    expect(fs.readFileSync(path.join(dir, EVENTS_FILE), 'utf8')).toBe('');
    expect(isTrainEvent({ type: 'nope' })).toBe(false);
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });
});
