import { describe, expect, it } from 'vitest';
import { totalBytes, MEMORY_CATEGORIES } from '../src/events.ts';
import { modelStateBytes } from '../src/strategy.ts';
import { MemoryTracker, MemoryAccountingError, estimateMemory, estimateStrategy, formatBytes } from '../src/memory.ts';

describe('MemoryTracker', () => {
  it('tracks bytes by category and place, totals, model state and peaks', () => {
    const t = new MemoryTracker();
    const p = t.alloc('params', 'device', 400, 'flat params');
    const g = t.track('grads', 'device', new Float32Array(100));
    const m = t.alloc('optimizer', 'host', 800);
    const gathered = t.alloc('gathered', 'device', 1000, 'h0');
    expect(t.report()).toEqual(t.current());
    let r = { ...t.summary(), ...t.summary().memory };
    expect(r.params).toEqual({ device: 400, host: 0 });
    expect(r.grads).toEqual({ device: 400, host: 0 });
    expect(r.optimizer).toEqual({ device: 0, host: 800 });
    expect(r.gathered).toEqual({ device: 1000, host: 0 });
    expect(r.activations).toEqual({ device: 0, host: 0 });
    expect(r.total).toEqual({ device: 1800, host: 800 });
    expect(r.modelStateBytes).toBe(1600); // gathered buffers are not model state
    t.free(gathered);
    const act = t.alloc('activations', 'device', 300);
    t.resize(act, 500);
    r = { ...t.summary(), ...t.summary().memory };
    expect(r.gathered.device).toBe(0);
    expect(r.activations.device).toBe(500);
    expect(r.total).toEqual({ device: 1300, host: 800 });
    expect(r.peak.total).toEqual({ device: 1800, host: 800 });
    expect(t.peaks().gathered.device).toBe(1000);
    t.free(g);
    t.free(p);
    t.free(m);
    t.free(act);
    r = { ...t.summary(), ...t.summary().memory };
    for (const c of MEMORY_CATEGORIES) expect(r[c]).toEqual({ device: 0, host: 0 });
    expect(r.peak.modelStateBytes).toBe(1600);
    t.resetPeak();
    expect(t.summary().peak).toEqual({ total: { device: 0, host: 0 }, modelStateBytes: 0 });
  });

  it('report() is a snapshot holding exactly the categories (the metrics/dashboard shape)', () => {
    const t = new MemoryTracker();
    const snap = t.report();
    t.alloc('params', 'host', 8);
    expect(snap.params.host).toBe(0);
    expect(Object.keys(t.report())).toEqual([...MEMORY_CATEGORIES]);
    expect(totalBytes(t.report())).toBe(8);
    expect(modelStateBytes(t.report())).toBe(t.summary().modelStateBytes);
  });

  it('rejects double free, bad categories and negative sizes', () => {
    const t = new MemoryTracker();
    const a = t.alloc('grads', 'host', 4, 'g');
    t.free(a);
    expect(() => t.free(a)).toThrow(/already freed/);
    expect(() => t.resize(a, 8)).toThrow(MemoryAccountingError);
    // @ts-expect-error: not a category
    expect(() => t.alloc('weights', 'host', 4)).toThrow(/category = weights, expected params \| grads/);
    // @ts-expect-error: not a place
    expect(() => t.alloc('params', 'gpu', 4)).toThrow(/place = gpu/);
    expect(() => t.alloc('params', 'host', -1)).toThrow(/bytes = -1/);
  });
});

describe('ZeRO model-state formulas', () => {
  const psi = 1_000_000;
  it.each([1, 2, 3, 4, 8])('N=%i: DDP 16Ψ, ZeRO-1 8Ψ+8Ψ/N, ZeRO-2 4Ψ+12Ψ/N, ZeRO-3 16Ψ/N', (n) => {
    const shard = Math.ceil(psi / n);
    const rows = estimateMemory({ params: psi, nproc: n });
    expect(rows.map((r) => `${r.strategy}${r.offload ? '+offload' : ''}`)).toEqual([
      'ddp',
      'ddp+offload',
      'zero1',
      'zero1+offload',
      'zero2',
      'zero2+offload',
      'zero3',
      'zero3+offload',
    ]);
    const dev = (s: string, off: boolean): number =>
      rows.find((r) => r.strategy === s && r.offload === off)!.device.total;
    const host = (s: string, off: boolean): number =>
      rows.find((r) => r.strategy === s && r.offload === off)!.host.total;
    expect(dev('ddp', false)).toBe(16 * psi);
    expect(dev('zero1', false)).toBe(8 * psi + 8 * shard);
    expect(dev('zero2', false)).toBe(4 * psi + 12 * shard);
    expect(dev('zero3', false)).toBe(16 * shard);
    for (const s of ['ddp', 'zero1', 'zero2', 'zero3']) expect(host(s, false)).toBe(0);
    // Offload: the Adam state leaves the device; the host holds it plus the CPU step's params/grads.
    expect(dev('ddp', true)).toBe(8 * psi);
    expect(dev('zero1', true)).toBe(8 * psi);
    expect(dev('zero2', true)).toBe(4 * psi + 4 * shard);
    expect(dev('zero3', true)).toBe(8 * shard);
    expect(host('ddp', true)).toBe(16 * psi);
    for (const s of ['zero1', 'zero2', 'zero3']) expect(host(s, true)).toBe(16 * shard);
    for (const r of rows) {
      expect(r.device.total).toBe(r.device.params + r.device.grads + r.device.optimizer);
      if (r.offload) expect(r.device.optimizer).toBe(0);
    }
  });

  it('uses a partition shard length when given (padding included)', () => {
    const e = estimateStrategy('zero3', false, { params: 10, nproc: 4, shardParams: 4 });
    expect(e.device).toEqual({ params: 16, grads: 16, optimizer: 32, total: 64 });
    expect(() => estimateStrategy('zero3', false, { params: 10, nproc: 4, shardParams: 2 })).toThrow(/shardParams = 2/);
    expect(() => estimateMemory({ params: 10, nproc: 0 })).toThrow(/nproc = 0, expected an integer >= 1/);
    expect(() => estimateMemory({ params: -5, nproc: 2 })).toThrow(/params = -5/);
  });

  it('formats bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(16 * 2 ** 30)).toBe('16.00 GiB');
  });
});
