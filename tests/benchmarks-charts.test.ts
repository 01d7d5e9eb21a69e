import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  writeBusbwChart,
  writeScalingChart,
  writeMemoryChart,
  ChartInputError,
  renderSvg,
  busbwChartSpec,
} from '../benchmarks/common/charts/index.ts';

/** Number of marks of one kind vega drew ("line mark", "point", "rule mark", "bar"), from its ARIA labels. */
function markCount(svg: string, kind: string): number {
  return svg.split(`role="graphics-symbol" aria-roledescription="${kind}"`).length - 1;
}
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'zr-charts-'));

describe('benchmark charts (SVG)', () => {
  it('busbw: one line per op, a point per size, log-2 byte axis, ceiling rule with label', async () => {
    const rows = [];
    for (const op of ['allreduce', 'allgather'])
      for (let bytes = 1024; bytes <= 4 * 1048576; bytes *= 8)
        rows.push({ op, bytes, busbwGBs: Math.log2(bytes) / 20 });
    const file = path.join(tmp(), 'sub', 'collectives-2.svg');
    // The shape `zeroring bench collectives --json` writes (extra fields are ignored).
    const doc = { bench: 'collectives', nproc: 2, ceiling: { op: 'ceiling', bytes: 1 << 26, busbwGBs: 1.25 }, rows };
    const svg = await writeBusbwChart({ ...doc, ceilingLabel: 'loopback' }, file);
    expect(fs.readFileSync(file, 'utf8')).toBe(svg);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(markCount(svg, 'line mark')).toBe(2);
    expect(markCount(svg, 'point')).toBe(rows.length);
    expect(markCount(svg, 'rule mark')).toBe(1);
    const labels = texts(svg);
    expect(labels).toEqual(
      expect.arrayContaining([
        '1K',
        '4M',
        'allreduce',
        'allgather',
        'loopback: 1.25 GB/s',
        'Collectives bus bandwidth, 2 ranks',
      ]),
    );
  });

  it('busbw without a ceiling draws no rule', async () => {
    const svg = await renderSvg(
      busbwChartSpec({ nproc: 2, ceiling: null, rows: [{ op: 'broadcast', bytes: 4096, busbwGBs: 0.5 }] }),
    );
    expect(markCount(svg, 'rule mark')).toBe(0);
  });

  it('scaling: measured and ideal lines per strategy', async () => {
    const results = [1, 2, 4].flatMap((n) => [
      { nproc: n, tokensPerSec: 900 * n ** 0.8, strategy: 'ddp' },
      { nproc: n, tokensPerSec: 800 * n ** 0.7, strategy: 'zero3' },
    ]);
    const svg = await writeScalingChart({ model: 'tiny', backend: 'cpu', results }, path.join(tmp(), 'scaling.svg'));
    expect(markCount(svg, 'line mark')).toBe(2 + 2); // ideal layer first, then measured
    expect(texts(svg)).toEqual(expect.arrayContaining(['ddp', 'zero3', 'ranks', 'tokens/s (all ranks)']));
  });

  it('memory: one bar per strategy and series, labelled in MiB', async () => {
    const results = ['ddp', 'zero1', 'zero2', 'zero3'].flatMap((strategy, i) => [
      { strategy, series: 'measured', bytesPerRank: (16 * 1048576) / (i + 1) },
      { strategy, series: 'estimated', bytesPerRank: (15 * 1048576) / (i + 1) },
    ]);
    const svg = await writeMemoryChart({ nproc: 4, paramCount: 1_000_000, results }, path.join(tmp(), 'memory.svg'));
    expect(markCount(svg, 'bar')).toBe(8);
    expect(texts(svg)).toEqual(
      expect.arrayContaining(['ddp', 'zero3', '16', '15', '4', '3.75', '4 ranks, 1,000,000 params']),
    );
  });

  it('names the bad input', async () => {
    await expect(writeBusbwChart({ nproc: 2, rows: [] }, path.join(tmp(), 'x.svg'))).rejects.toThrow(ChartInputError);
    await expect(
      writeMemoryChart(
        { nproc: 2, results: [{ strategy: 'ddp', series: 'm', bytesPerRank: Number.NaN }] },
        path.join(tmp(), 'y.svg'),
      ),
    ).rejects.toThrow('results[0].bytesPerRank is null: expected a finite number');
  });
});
