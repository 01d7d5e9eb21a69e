// Bus bandwidth against message size, one line per collective, with the ceiling as a dashed
// rule: how close each ring collective gets to what the transport can carry (nccl-tests'
// busbw, so results compare across world sizes: allreduce busbw = algbw * 2(N-1)/N).
import { BASE_CONFIG, BYTES_LABEL_EXPR, requireFinite, requireRows, writeSvg, type ChartSpec } from './render.ts';

/**
 * The parts of `zeroring bench collectives --json FILE` (@zeroring/comm's bench/collectives-worker.ts) the
 * chart reads; the whole JSON document can be passed as it is.
 */
export interface CollectivesBenchResult {
  nproc: number;
  /** The raw-TCP ring pump row: busbwGBs is the ceiling; drawn when present. */
  ceiling?: { busbwGBs: number } | null;
  /** Label of the ceiling line (default "raw TCP ring"). */
  ceilingLabel?: string;
  rows: Array<{ op: string; bytes: number; busbwGBs: number }>;
}

export function busbwChartSpec(bench: CollectivesBenchResult, title?: string): ChartSpec {
  const rows = requireRows(bench.rows, 'busbw chart', '{ op, bytes, busbwGBs }', 'rows').filter(
    (r) => r.op !== 'ceiling',
  );
  const values = rows.map((r, i) => ({
    op: String(r.op),
    bytes: requireFinite(r.bytes, `rows[${i}].bytes`),
    busbw: requireFinite(r.busbwGBs, `rows[${i}].busbwGBs`),
  }));
  const layers: ChartSpec[] = [
    {
      mark: { type: 'line', point: true, strokeWidth: 2 },
      encoding: {
        x: {
          field: 'bytes',
          type: 'quantitative',
          title: 'message size (bytes)',
          scale: { type: 'log', base: 2, nice: false },
          axis: { labelExpr: BYTES_LABEL_EXPR, tickCount: 10 },
        },
        y: { field: 'busbw', type: 'quantitative', title: 'bus bandwidth (GB/s)' },
        color: { field: 'op', type: 'nominal', title: 'collective' },
      },
    } as ChartSpec,
  ];
  if (bench.ceiling) {
    const ceiling = requireFinite(bench.ceiling.busbwGBs, 'ceiling.busbwGBs');
    const label = `${bench.ceilingLabel ?? 'raw TCP ring'}: ${ceiling.toPrecision(3)} GB/s`;
    layers.push(
      {
        data: { values: [{ y: ceiling }] },
        mark: { type: 'rule', strokeDash: [6, 4], color: '#555' },
        encoding: { y: { field: 'y', type: 'quantitative' } },
      } as ChartSpec,
      {
        data: { values: [{ y: ceiling, label }] },
        mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 4, dy: -3, x: 0, color: '#555', fontSize: 11 },
        encoding: { y: { field: 'y', type: 'quantitative' }, text: { field: 'label' } },
      } as ChartSpec,
    );
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: title ?? `Collectives bus bandwidth, ${bench.nproc} ranks`,
    width: 560,
    height: 320,
    config: BASE_CONFIG,
    data: { values },
    layer: layers,
  } as ChartSpec;
}

export async function writeBusbwChart(bench: CollectivesBenchResult, file: string, title?: string): Promise<string> {
  return writeSvg(busbwChartSpec(bench, title), file);
}
