// Training throughput against the number of ranks, one line per strategy, with dotted ideal
// linear scaling from each strategy's smallest run: the gap is what communication costs.
import { BASE_CONFIG, requireFinite, requireRows, writeSvg, type ChartSpec } from './render.ts';

/** Shape of the training scaling benchmark (benchmarks/results/scaling-*-2vcpu.json). */
export interface ScalingBenchResult {
  model?: string;
  backend?: string;
  results: Array<{ nproc: number; tokensPerSec: number; strategy?: string }>;
}

export function scalingChartSpec(bench: ScalingBenchResult, title?: string): ChartSpec {
  const rows = requireRows(bench.results, 'scaling chart', '{ nproc, tokensPerSec, strategy? }');
  const values = rows.map((r, i) => ({
    strategy: r.strategy ?? 'ddp',
    nproc: requireFinite(r.nproc, `results[${i}].nproc`),
    tps: requireFinite(r.tokensPerSec, `results[${i}].tokensPerSec`),
    kind: 'measured',
  }));
  const ideal: typeof values = [];
  for (const strategy of new Set(values.map((v) => v.strategy))) {
    const mine = values.filter((v) => v.strategy === strategy).sort((a, b) => a.nproc - b.nproc);
    const base = mine[0];
    if (mine.length < 2) continue;
    for (const v of mine)
      ideal.push({ strategy, nproc: v.nproc, tps: (base.tps * v.nproc) / base.nproc, kind: 'ideal' });
  }
  const ranks = [...new Set(values.map((v) => v.nproc))].sort((a, b) => a - b);
  const x = {
    field: 'nproc',
    type: 'quantitative',
    title: 'ranks',
    axis: { values: ranks, format: 'd' },
    scale: { domain: [0, Math.max(...ranks)], nice: false },
  };
  const subtitle = [bench.model && `model ${bench.model}`, bench.backend && `backend ${bench.backend}`]
    .filter(Boolean)
    .join(', ');
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title ?? 'Training throughput vs ranks',
      subtitle: subtitle ? `${subtitle}; dotted: linear scaling` : 'dotted: linear scaling',
    },
    width: 480,
    height: 300,
    config: BASE_CONFIG,
    layer: [
      {
        data: { values: ideal },
        mark: { type: 'line', strokeDash: [2, 3], strokeWidth: 1.5, opacity: 0.7 },
        encoding: { x, y: { field: 'tps', type: 'quantitative' }, color: { field: 'strategy', type: 'nominal' } },
      },
      {
        data: { values },
        mark: { type: 'line', point: { size: 50 }, strokeWidth: 2 },
        encoding: {
          x,
          y: { field: 'tps', type: 'quantitative', title: 'tokens/s (all ranks)' },
          color: { field: 'strategy', type: 'nominal', title: 'strategy' },
        },
      },
    ],
  } as ChartSpec;
}

export async function writeScalingChart(bench: ScalingBenchResult, file: string, title?: string): Promise<string> {
  return writeSvg(scalingChartSpec(bench, title), file);
}
