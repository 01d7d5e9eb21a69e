// `zeroring train` started as one rank by another launcher (srun, a Kubernetes Indexed Job, here a
// test that sets the variables itself): two such processes form the job and end with the
// parameters of `zeroring train --nproc 2`; flags that would start or place workers, and RANK
// without WORLD_SIZE, are refused with one line naming them.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@zeroring/comm';
import { leftovers, runCli, type CliResult } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-as-rank-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--backend wasm --steps 3 --batch-size 2 --eval-interval 2 --eval-batches 2 --sample-tokens 20 --seed 7 ' +
  '--warmup-steps 1'
).split(' ');
const summaryOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
const unset = { RANK: undefined, WORLD_SIZE: undefined, LOCAL_RANK: undefined, LOCAL_WORLD_SIZE: undefined };

/** The messages of the JSON log lines at error level and above. */
function errorLines(r: CliResult): string[] {
  return r.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((l) => l.level >= 50)
    .map((l) => l.msg);
}

describe('zeroring train as one rank of a job another launcher started', () => {
  it('two processes with RANK/WORLD_SIZE/MASTER_* set train like --nproc 2', async () => {
    const port = await freePort();
    const env = (rank: number) => ({
      ...unset,
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: '2',
      LOCAL_WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ZERORING_TOKEN: 'as-rank-test-token',
    });
    const out = join(root, 'by-hand');
    const refOut = join(root, 'launched');
    // Rank 1 first: it waits for rank 0's store, as under a scheduler that starts ranks in any order.
    const ranks = [1, 0].map((rank) =>
      runCli(['train', ...common, '--out', out], { env: env(rank), timeoutMs: 120_000 }),
    );
    const [r1, r0] = await Promise.all(ranks);
    expect(r0!.code, r0!.output).toBe(0);
    expect(r1!.code, r1!.output).toBe(0);
    const ref = await runCli(['train', '--nproc', '2', ...common, '--out', refOut], { env: unset });
    expect(ref.code, ref.output).toBe(0);

    const s = summaryOf(out);
    expect(s).toMatchObject({ steps: 3, strategy: 'ddp', worldSize: 2, config: { backend: 'wasm', nproc: 2 } });
    expect(s.paramChecksum).toBe(summaryOf(refOut).paramChecksum);
    expect(r0!.stdout).toContain('--- sample ---');
    // Rank 1 speaks only for warnings and errors, as under the launcher.
    expect(r1!.output.trim(), r1!.output).toBe('');
    for (const r of [r0!, r1!]) expect(await leftovers(r.marker)).toEqual([]);
  }, 240_000);

  it('a flag that would start or place workers is refused, naming it', async () => {
    const env = { ...unset, RANK: '0', WORLD_SIZE: '2', ZERORING_TOKEN: 't', MASTER_PORT: String(await freePort()) };
    const r = await runCli(['train', ...common, '--nproc', '2', '--master-port', '29511'], { env, timeoutMs: 60_000 });
    expect(r.code, r.output).toBe(1);
    const lines = errorLines(r);
    expect(lines, r.output).toHaveLength(1);
    expect(lines[0]).toMatch(/^zeroring train failed: ConfigError: RANK=0 and WORLD_SIZE=2 are set, so this process /);
    expect(lines[0]).toContain('but --nproc 2, --master-port 29511 would start or place workers: expected none of');
  }, 60_000);

  it('RANK without WORLD_SIZE is refused rather than defaulted', async () => {
    const r = await runCli(['train', ...common], { env: { ...unset, RANK: '1' }, timeoutMs: 60_000 });
    expect(r.code, r.output).toBe(1);
    const lines = errorLines(r);
    expect(lines, r.output).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^zeroring train failed: ConfigError: RANK=1 is set but WORLD_SIZE is not: expected both /,
    );
  }, 60_000);
});
