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
});
