// SVG charts for benchmark results (Vega-Lite rendered headless in Node).
export { renderSvg, writeSvg, ChartInputError, type ChartSpec } from './render.ts';
export { writeBusbwChart, busbwChartSpec, type CollectivesBenchResult } from './busbw.ts';
export { writeScalingChart, scalingChartSpec, type ScalingBenchResult } from './scaling.ts';
export { writeMemoryChart, memoryChartSpec, type MemoryBenchResult } from './memory.ts';
