// Bytes per rank for each strategy as grouped bars (e.g. measured next to the ZeRO paper's
// estimate, or device next to host with offload): the picture of what ZeRO saves.
import { BASE_CONFIG, requireFinite, requireRows, writeSvg, type ChartSpec } from './render.ts';

/** Shape of the memory benchmark (benchmarks/results/memory-small-2vcpu.json). */
export interface MemoryBenchResult {
  nproc: number;
  paramCount?: number;
  results: Array<{
    /** e.g. "ddp", "zero1", "zero3+offload": one group of bars. */
    strategy: string;
    /** Bar within the group, e.g. "measured" | "estimated" or "device" | "host". */
    series: string;
    bytesPerRank: number;
  }>;
}

export function memoryChartSpec(bench: MemoryBenchResult, title?: string): ChartSpec {
  const rows = requireRows(bench.results, 'memory chart', '{ strategy, series, bytesPerRank }');
  const values = rows.map((r, i) => ({
    strategy: String(r.strategy),
    series: String(r.series),
    mib: requireFinite(r.bytesPerRank, `results[${i}].bytesPerRank`) / 1048576,
  }));
  const order = [...new Set(values.map((v) => v.strategy))];
  const params = bench.paramCount !== undefined ? `, ${bench.paramCount.toLocaleString('en-US')} params` : '';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title ?? 'Model-state memory per rank', subtitle: `${bench.nproc} ranks${params}` },
    width: { step: 26 },
    height: 300,
    config: BASE_CONFIG,
    data: { values },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'strategy', type: 'nominal', sort: order, title: 'strategy', axis: { labelAngle: 0 } },
          xOffset: { field: 'series', type: 'nominal' },
          y: { field: 'mib', type: 'quantitative', title: 'MiB per rank' },
          color: { field: 'series', type: 'nominal', title: null },
        },
      },
      {
        mark: { type: 'text', dy: -4, fontSize: 9, color: '#333' },
        encoding: {
          x: { field: 'strategy', type: 'nominal', sort: order },
          xOffset: { field: 'series', type: 'nominal' },
          y: { field: 'mib', type: 'quantitative' },
          text: { field: 'mib', type: 'quantitative', format: '.3~g' },
        },
      },
    ],
  } as ChartSpec;
}

export async function writeMemoryChart(bench: MemoryBenchResult, file: string, title?: string): Promise<string> {
  return writeSvg(memoryChartSpec(bench, title), file);
}
