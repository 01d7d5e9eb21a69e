// Renders a Vega-Lite spec to a standalone SVG string in Node: vega's headless View with the
// 'none' renderer needs no DOM and no canvas (text widths are estimated), so benchmark scripts
// can write charts next to their JSON without a browser.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export type ChartSpec = TopLevelSpec;

/** Shared look: white background, readable fonts, no chart border. */
export const BASE_CONFIG = {
  background: 'white',
  font: 'DejaVu Sans, Helvetica, Arial, sans-serif',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' as const },
  range: { category: ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'] },
};

export async function renderSvg(spec: ChartSpec): Promise<string> {
  const { spec: vgSpec } = compile(spec);
  const view = new vega.View(vega.parse(vgSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function writeSvg(spec: ChartSpec, file: string): Promise<string> {
  const svg = await renderSvg(spec);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, svg);
  return svg;
}

/** Vega expression labelling a byte count axis in binary units (1K, 64K, 16M, 1G). */
export const BYTES_LABEL_EXPR =
  "datum.value >= 1073741824 ? format(datum.value / 1073741824, '~g') + 'G' : " +
  "datum.value >= 1048576 ? format(datum.value / 1048576, '~g') + 'M' : " +
  "datum.value >= 1024 ? format(datum.value / 1024, '~g') + 'K' : format(datum.value, '~g')";

export class ChartInputError extends Error {
  override name = 'ChartInputError';
}

/** Checks that `rows` is a non-empty array; names the chart and the expected shape when not. */
export function requireRows<T>(rows: T[] | undefined, chart: string, shape: string, key = 'results'): T[] {
  if (!Array.isArray(rows) || rows.length === 0) {
    throw new ChartInputError(`${chart}: no data rows (got ${JSON.stringify(rows)}); expected ${key}: [${shape}, ...]`);
  }
  return rows;
}

export function requireFinite(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ChartInputError(`${what} is ${JSON.stringify(value)}: expected a finite number`);
  }
  return value;
}
