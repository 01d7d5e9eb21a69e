// World size 1 needs no sockets: every collective is local and cheap.
import { describe, expect, it } from 'vitest';
import { initProcessGroup } from '../src/index.ts';

describe('world size 1', () => {
  it('runs every collective locally and checks arguments', async () => {
    const pg = await initProcessGroup({ rank: 0, worldSize: 1 });
    expect([pg.rank, pg.worldSize]).toEqual([0, 1]);
    const a = new Float32Array([1, -2, 3]);
    for (const op of ['sum', 'avg', 'max', 'min'] as const) await pg.allReduce(a, { op });
    expect(Array.from(a)).toEqual([1, -2, 3]);
    const out = new Float32Array(3);
    await pg.reduceScatter(a, out);
    expect(Array.from(out)).toEqual([1, -2, 3]);
    const g = new Float32Array(3);
    await pg.allGather(a, g);
    expect(Array.from(g)).toEqual([1, -2, 3]);
    await pg.broadcast(a, 0);
    await pg.barrier();
    await expect(pg.broadcast(a, 1)).rejects.toThrow('broadcast: root=1 is out of range, expected 0..0');
    await expect(pg.reduceScatter(a, new Float32Array(2))).rejects.toThrow(
      'input.length=3, expected worldSize * output.length = 1 * 2 = 2',
    );
    // @ts-expect-error a wrong op from untyped callers
    await expect(pg.allReduce(a, { op: 'prod' })).rejects.toThrow(
      "reduce op 'prod' is not supported, expected one of sum, avg, max, min",
    );
    // @ts-expect-error a wrong buffer type from untyped callers
    await expect(pg.allReduce(new Float64Array(2))).rejects.toThrow(
      'allReduce: buf must be a Float32Array, got Float64Array',
    );
    await pg.destroy();
    await expect(pg.barrier()).rejects.toThrow('destroyed');
  });

  it('a 16-bit all-reduce alone rounds to the 16-bit type; a wrong wire is refused by name', async () => {
    const pg = await initProcessGroup({ rank: 0, worldSize: 1 });
    const a = new Float32Array([1 / 3, 70000, 1e-8]);
    const b = a.slice();
    await pg.allReduce(a, { op: 'avg', wire: 'bfloat16' });
    expect(Array.from(a)).toEqual([0.333984375, 70144, Math.fround(1.0011717677116394e-8)]);
    await pg.allReduce(b, { op: 'sum', wire: 'float16' });
    expect(Array.from(b)).toEqual([0.333251953125, Infinity, 0]);
    // @ts-expect-error a wrong wire from untyped callers
    await expect(pg.allReduce(a, { wire: 'int8' })).rejects.toThrow(
      "allReduce: wire 'int8' is not supported, expected one of float32, bfloat16, float16",
    );
    await expect(pg.reduceScatter(a, new Float32Array(3), { wire: 'bfloat16' })).rejects.toThrow(
      "reduceScatter: wire 'bfloat16' is not supported, expected float32",
    );
    expect(pg.bytesSent).toBe(0);
    await pg.destroy();
  });
});
