// Memory accounting: what each rank holds, by category (params, grads, optimizer, ...) and place
// (device, host), and what the ZeRO paper's formulas say it should hold. MemoryTracker is
// bookkeeping, not an allocator: strategies call alloc()/free() where they create and drop buffers,
// so the report says what the strategy holds, which a backend's global counter cannot.
// Details (the formulas, and what offload moves): docs/internals.md#memory-accounting
import { MEMORY_CATEGORIES, type MemoryCategory, type MemoryReport, type PlaceBytes } from './events.ts';

// The category list and report shape are the dashboard/metrics contract (events.ts, imported
// from there, not re-exported); the tracker fills exactly that shape so a strategy's memory() can
// return tracker.report() as is.
export const MEMORY_PLACES = ['device', 'host'] as const;
export type MemoryPlace = (typeof MEMORY_PLACES)[number];

/** Every category present. */
export type MemoryByCategory = Required<MemoryReport>;

/** report() plus totals, model-state bytes and high-water marks. */
export interface MemorySummary {
  memory: MemoryByCategory;
  total: PlaceBytes;
  /** params + grads + optimizer, device and host together. */
  modelStateBytes: number;
  peak: { total: PlaceBytes; modelStateBytes: number };
}

const MODEL_STATE: readonly MemoryCategory[] = ['params', 'grads', 'optimizer'];

export class MemoryAccountingError extends Error {
  constructor(what: string, value: unknown, expected: string) {
    super(`memory: ${what} = ${String(value)}, expected ${expected}`);
    this.name = 'MemoryAccountingError';
  }
}

/** What alloc() returns; hand it back to free() or resize(). */
export interface Allocation {
  readonly category: MemoryCategory;
  readonly place: MemoryPlace;
  readonly bytes: number;
  readonly label: string;
}

interface LiveAllocation extends Allocation {
  bytes: number;
  live: boolean;
}

function emptyByCategory(): MemoryByCategory {
  return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, { device: 0, host: 0 }])) as MemoryByCategory;
}

export class MemoryTracker {
  private readonly cur = emptyByCategory();
  private readonly peakCell = emptyByCategory();
  private readonly peakTotal: PlaceBytes = { device: 0, host: 0 };
  private peakModelState = 0;

  alloc(category: MemoryCategory, place: MemoryPlace, bytes: number, label = ''): Allocation {
    this.check(category, place, bytes);
    const a: LiveAllocation = { category, place, bytes, label, live: true };
    this.add(category, place, bytes);
    return a;
  }

  /** Accounts a typed array (or anything with byteLength). */
  track(category: MemoryCategory, place: MemoryPlace, buf: { byteLength: number }, label = ''): Allocation {
    return this.alloc(category, place, buf.byteLength, label);
  }

  free(a: Allocation): void {
    const live = a as LiveAllocation;
    if (!live.live) {
      const what = `free of ${a.category}/${a.place} ${a.label || 'allocation'}`;
      throw new MemoryAccountingError(what, 'already freed', 'a live allocation (double free)');
    }
    live.live = false;
    this.add(a.category, a.place, -a.bytes);
  }

  /** Changes a live allocation's size (a buffer regrown, an activation set re-measured). */
  resize(a: Allocation, bytes: number): void {
    const live = a as LiveAllocation;
    this.check(a.category, a.place, bytes);
    if (!live.live) {
      const what = `resize of ${a.category}/${a.place} ${a.label || 'allocation'}`;
      throw new MemoryAccountingError(what, 'freed', 'a live allocation');
    }
    this.add(a.category, a.place, bytes - live.bytes);
    live.bytes = bytes;
  }

  private check(category: MemoryCategory, place: MemoryPlace, bytes: number): void {
    if (!MEMORY_CATEGORIES.includes(category)) {
      throw new MemoryAccountingError('category', category, MEMORY_CATEGORIES.join(' | '));
    }
    if (!MEMORY_PLACES.includes(place)) throw new MemoryAccountingError('place', place, MEMORY_PLACES.join(' | '));
    if (!Number.isFinite(bytes) || bytes < 0) throw new MemoryAccountingError('bytes', bytes, 'a finite number >= 0');
  }

  private add(category: MemoryCategory, place: MemoryPlace, delta: number): void {
    const cell = this.cur[category];
    cell[place] += delta;
    this.peakCell[category][place] = Math.max(this.peakCell[category][place], cell[place]);
    const total = this.total(this.cur);
    this.peakTotal.device = Math.max(this.peakTotal.device, total.device);
    this.peakTotal.host = Math.max(this.peakTotal.host, total.host);
    this.peakModelState = Math.max(this.peakModelState, this.modelState(this.cur));
  }

  private total(by: MemoryByCategory): PlaceBytes {
    const t = { device: 0, host: 0 };
    for (const c of MEMORY_CATEGORIES) {
      t.device += by[c].device;
      t.host += by[c].host;
    }
    return t;
  }

  private modelState(by: MemoryByCategory): number {
    return MODEL_STATE.reduce((a, c) => a + by[c].device + by[c].host, 0);
  }

  /** Current bytes by category and place (a copy). */
  current(): MemoryByCategory {
    return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, { ...this.cur[c] }])) as MemoryByCategory;
  }

  /** Each cell's own high-water mark (cells peak at different times, so these need not sum to peak.total). */
  peaks(): MemoryByCategory {
    return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, { ...this.peakCell[c] }])) as MemoryByCategory;
  }

  /** Current bytes by category and place: the metrics/dashboard `memory` shape (a copy). */
  report(): MemoryByCategory {
    return this.current();
  }

  summary(): MemorySummary {
    return {
      memory: this.current(),
      total: this.total(this.cur),
      modelStateBytes: this.modelState(this.cur),
      peak: { total: { ...this.peakTotal }, modelStateBytes: this.peakModelState },
    };
  }

  /** Starts a new high-water period at the current level (e.g. per step). */
  resetPeak(): void {
    for (const c of MEMORY_CATEGORIES) this.peakCell[c] = { ...this.cur[c] };
    const t = this.total(this.cur);
    this.peakTotal.device = t.device;
    this.peakTotal.host = t.host;
    this.peakModelState = this.modelState(this.cur);
  }
}

// ---------------------------------------------------------------------------------------------
// Formulas

export const STRATEGIES = ['ddp', 'zero1', 'zero2', 'zero3'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export interface ModelStateBytes {
  params: number;
  grads: number;
  optimizer: number;
  total: number;
}

export interface MemoryEstimate {
  strategy: StrategyName;
  offload: boolean;
  /** Per rank. */
  device: ModelStateBytes;
  host: ModelStateBytes;
}

export interface EstimateInput {
  /** Ψ: distinct parameters. */
  params: number;
  /** N: ranks. */
  nproc: number;
  /** Elements each rank owns; default ceil(Ψ/N). Pass a partition's shardLength to include its padding. */
  shardParams?: number;
}

const F32 = 4;
const ADAM_STATES = 2; // exp_avg, exp_avg_sq

function bytesOf(params: number, grads: number, optimizer: number): ModelStateBytes {
  return { params, grads, optimizer, total: params + grads + optimizer };
}

/** Model-state bytes per rank for one strategy, with or without optimizer offload. */
export function estimateStrategy(strategy: StrategyName, offload: boolean, input: EstimateInput): MemoryEstimate {
  const { params: psi, nproc: n } = input;
  if (!Number.isSafeInteger(psi) || psi < 0) throw new MemoryAccountingError('params', psi, 'a non-negative integer');
  if (!Number.isInteger(n) || n < 1) throw new MemoryAccountingError('nproc', n, 'an integer >= 1');
  if (!STRATEGIES.includes(strategy)) throw new MemoryAccountingError('strategy', strategy, STRATEGIES.join(' | '));
  const shard = input.shardParams ?? Math.ceil(psi / n);
  if (!Number.isSafeInteger(shard) || shard * n < psi) {
    throw new MemoryAccountingError('shardParams', shard, `an integer >= params / nproc = ${psi / n}`);
  }
  // What each stage shards: the optimizer from ZeRO-1, gradients from ZeRO-2, params from ZeRO-3.
  const stage = { ddp: 0, zero1: 1, zero2: 2, zero3: 3 }[strategy];
  const paramElems = stage >= 3 ? shard : psi;
  const gradElems = stage >= 2 ? shard : psi;
  const optElems = stage >= 1 ? shard : psi;
  const optimizer = ADAM_STATES * F32 * optElems;
  if (!offload) {
    const device = bytesOf(F32 * paramElems, F32 * gradElems, optimizer);
    return { strategy, offload, device, host: bytesOf(0, 0, 0) };
  }
  return {
    strategy,
    offload,
    device: bytesOf(F32 * paramElems, F32 * gradElems, 0),
    // The CPU step's domain: its fp32 params (master) and grads, and the Adam moments.
    host: bytesOf(F32 * optElems, F32 * optElems, optimizer),
  };
}

/** Every strategy, without and with offload: the table `zeroring estimate-memory` prints. */
export function estimateMemory(input: EstimateInput): MemoryEstimate[] {
  return STRATEGIES.flatMap((s) => [estimateStrategy(s, false, input), estimateStrategy(s, true, input)]);
}

/** Bytes in binary units, e.g. 1.50 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${units[u]}`;
}
