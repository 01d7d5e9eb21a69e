import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.ts';
import { availableParallelism, hostname } from 'node:os';
import { DEFAULT_TIMEOUT_MS, defaultSharedMemory, resolveOptions } from '../src/env.ts';

describe('resolveOptions', () => {
  it('defaults to a single process on loopback', () => {
    const o = resolveOptions({}, {});
    expect(o).toMatchObject({
      rank: 0,
      worldSize: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
      timeoutMs: DEFAULT_TIMEOUT_MS,
      storeHostedBy: 'rank0',
    });
  });

  it('reads the torchrun environment and zeroring variables', () => {
    const o = resolveOptions(
      {},
      {
        RANK: '2',
        WORLD_SIZE: '4',
        LOCAL_RANK: '0',
        LOCAL_WORLD_SIZE: '2',
        MASTER_ADDR: 'localhost',
        MASTER_PORT: '1234',
        ZERORING_TOKEN: 's3cret',
        ZERORING_TIMEOUT_MS: '5000',
        ZERORING_STORE_EXTERNAL: '1',
        ZERORING_BIND_ADDR: '0.0.0.0',
        ZERORING_RESTART_COUNT: '3',
      },
    );
    expect(o).toMatchObject({
      rank: 2,
      worldSize: 4,
      localRank: 0,
      localWorldSize: 2,
      masterAddr: '127.0.0.1',
      masterPort: 1234,
      token: 's3cret',
      timeoutMs: 5000,
      storeHostedBy: 'external',
      bindAddr: '0.0.0.0',
      restartCount: 3,
    });
    expect(o.rendezvousTimeoutMs).toBe(DEFAULT_TIMEOUT_MS);
  });

  it('small all-reduce threshold: by world size unless set', () => {
    expect(resolveOptions({ worldSize: 2, token: 't' }, {}).smallAllReduceBytes).toBe(64 * 1024);
    expect(resolveOptions({ worldSize: 4, token: 't' }, {}).smallAllReduceBytes).toBe(8 * 1024);
    expect(
      resolveOptions({ worldSize: 4, token: 't' }, { ZERORING_SMALL_ALLREDUCE_BYTES: '0' }).smallAllReduceBytes,
    ).toBe(0);
  });

  it('shared memory for same-host ranks that outnumber the cores, unless ZERORING_SHM or the option says', () => {
    expect(defaultSharedMemory(4, 2)).toBe(true);
    expect(defaultSharedMemory(2, 2)).toBe(false);
    expect(defaultSharedMemory(4, 16)).toBe(false);
    const cores = availableParallelism();
    expect(resolveOptions({ worldSize: cores + 1, token: 't' }, {}).sharedMemory).toBe(true);
    expect(
      resolveOptions({ worldSize: 4 * (cores + 1), token: 't' }, { LOCAL_WORLD_SIZE: String(cores) }).sharedMemory,
    ).toBe(false);
    expect(resolveOptions({ worldSize: 2, token: 't' }, { ZERORING_SHM: '1' }).sharedMemory).toBe(true);
    expect(resolveOptions({ worldSize: cores + 1, token: 't' }, { ZERORING_SHM: '0' }).sharedMemory).toBe(false);
    expect(resolveOptions({ worldSize: cores + 1, token: 't' }, { ZERORING_SHM: 'false' }).sharedMemory).toBe(false);
    expect(resolveOptions({ worldSize: 2, token: 't', sharedMemory: true }, { ZERORING_SHM: '0' }).sharedMemory).toBe(
      true,
    );
  });

  it('hierarchical all-reduce: chosen by the layout unless ZERORING_HIERARCHICAL or the option says', () => {
    const hier = (env: Record<string, string>, hierarchical?: boolean) =>
      resolveOptions(hierarchical === undefined ? {} : { hierarchical }, env).hierarchical;
    expect(hier({})).toBe('auto');
    expect(hier({ ZERORING_HIERARCHICAL: '' })).toBe('auto');
    expect(hier({ ZERORING_HIERARCHICAL: '1' })).toBe('on');
    expect(hier({ ZERORING_HIERARCHICAL: 'true' })).toBe('on');
    expect(hier({ ZERORING_HIERARCHICAL: '0' })).toBe('off');
    expect(hier({ ZERORING_HIERARCHICAL: '1' }, false)).toBe('off');
  });

  it('names the node by the launcher node rank (GROUP_RANK), else by the hostname', () => {
    expect(resolveOptions({}, { GROUP_RANK: '3' }).node).toBe('node 3');
    expect(resolveOptions({}, {}).node).toBe(`host ${hostname()}`);
  });

  it('options win over the environment', () => {
    expect(resolveOptions({ rank: 1, worldSize: 2, token: 't' }, { RANK: '0', WORLD_SIZE: '5' })).toMatchObject({
      rank: 1,
      worldSize: 2,
    });
  });

  it.each([
    [{ RANK: '2', WORLD_SIZE: '2', ZERORING_TOKEN: 't' }, 'RANK=2 is out of range for WORLD_SIZE=2, expected 0..1'],
    [{ RANK: '-1', WORLD_SIZE: '2', ZERORING_TOKEN: 't' }, 'RANK=-1 is out of range'],
    [{ WORLD_SIZE: '0' }, 'WORLD_SIZE=0 is out of range, expected an integer >= 1'],
    [{ WORLD_SIZE: 'two' }, 'WORLD_SIZE="two" is not an integer'],
    [{ RANK: '1', WORLD_SIZE: '2' }, 'ZERORING_TOKEN is not set'],
    [{ MASTER_PORT: '70000' }, 'MASTER_PORT=70000 is out of range, expected 1..65535'],
    [{ ZERORING_CHUNK_BYTES: '6' }, 'ZERORING_CHUNK_BYTES=6 is out of range'],
    [
      { ZERORING_SMALL_ALLREDUCE_BYTES: '-1' },
      'ZERORING_SMALL_ALLREDUCE_BYTES=-1 is out of range, expected a number of bytes >= 0',
    ],
    [{ ZERORING_TIMEOUT_MS: '0' }, 'ZERORING_TIMEOUT_MS=0 is out of range'],
    [{ ZERORING_SHM: 'no' }, 'ZERORING_SHM="no", expected 1 or 0'],
    [{ ZERORING_HIERARCHICAL: 'yes' }, 'ZERORING_HIERARCHICAL="yes", expected 1 or 0 (true or false)'],
  ])('rejects %j', (env, msg) => {
    expect(() => resolveOptions({}, env)).toThrow(ConfigError);
    expect(() => resolveOptions({}, env)).toThrow(msg);
  });
});
