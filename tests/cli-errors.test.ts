// What a user meets when a command cannot do its job: one clear line at error level naming the
// problem, a non-zero exit, no stack trace (that is for --log-level debug), and no process left
// behind. Each case runs the real CLI as a user types it.
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftovers, runCli, type CliResult } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-cli-errors-'));
const empty = join(root, 'empty');
const run = join(root, 'run');
let busy: Server;
let busyPort = 0;

beforeAll(async () => {
  mkdirSync(empty);
  busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  busyPort = (busy.address() as { port: number }).port;
  const r = await runCli([
    'train',
    '--backend',
    'wasm',
    '--steps',
    '1',
    '--batch-size',
    '2',
    '--eval-batches',
    '1',
    '--sample-tokens',
    '0',
    '--out',
    run,
  ]);
  expect(r.code, r.output).toBe(0);
});
afterAll(() => {
  busy.close();
  rmSync(root, { recursive: true, force: true });
});

/** The JSON log lines at error level (pino's 50) and above. */
function errorLines(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((l) => l.level >= 50)
    .map((l) => l.msg);
}

async function expectOneClearLine(r: CliResult, pattern: RegExp): Promise<void> {
  expect(r.code, r.output).not.toBe(0);
  expect(r.code, r.output).not.toBeNull();
  const errors = errorLines(r.output);
  expect(errors, r.output).toHaveLength(1);
  expect(errors[0]).toMatch(pattern);
  expect(r.output, 'a stack trace at the default log level').not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(r.output).not.toMatch(/artificially reduced/); // Dawn's adapter warnings stay out of sight
  expect(await leftovers(r.marker)).toEqual([]);
}

const quick = ['--steps', '2', '--batch-size', '2', '--sample-tokens', '0'];

describe('CLI errors: one line, no stack trace, non-zero exit, nothing left running', () => {
  it('train --data with a missing file', async () => {
    const r = await runCli(['train', '--nproc', '1', '--data', join(root, 'missing.txt'), ...quick]);
    await expectOneClearLine(r, /CorpusError: cannot read corpus file ".*missing\.txt" \(ENOENT\)/);
  });

  it('train --data with a binary file, in one process and through the launcher', async () => {
    const one = await runCli(['train', '--data', process.execPath, ...quick]);
    await expectOneClearLine(one, /CorpusError: corpus file ".*" is not valid UTF-8/);
    const two = await runCli(['train', '--nproc', '2', '--data', process.execPath, ...quick]);
    await expectOneClearLine(two, /CorpusError: corpus file ".*" is not valid UTF-8/);
  });

  it('train --resume with no checkpoint, in one process and through the launcher', async () => {
    const one = await runCli(['train', '--resume', '--out', empty, ...quick]);
    await expectOneClearLine(one, /CheckpointError: no complete checkpoint under .*empty/);
    const two = await runCli(['train', '--nproc', '2', '--resume', '--out', empty, ...quick]);
    await expectOneClearLine(two, /CheckpointError: no complete checkpoint at .*empty/);
  });

  it('train --backend tensorflow when libtensorflow is not installed', async () => {
    const r = await runCli(['train', '--backend', 'tensorflow', ...quick]);
    await expectOneClearLine(r, /TensorflowNotInstalledError: .*pnpm add @tensorflow\/tfjs-node-gpu@4\.22\.0/);
  });

  it('sample --checkpoint DIR without a checkpoint', async () => {
    const r = await runCli(['sample', '--checkpoint', empty]);
    await expectOneClearLine(r, /CheckpointError: no complete checkpoint at .*empty/);
  });

  it('consolidate on a corrupt checkpoint', async () => {
    const saved = join(run, 'checkpoints', readdirSync(join(run, 'checkpoints'))[0]!);
    const badManifest = join(root, 'bad-manifest');
    cpSync(saved, badManifest, { recursive: true });
    writeFileSync(join(badManifest, 'manifest.json'), '{"format": "zeroring-checkpoint", "trunc');
    const r = await runCli(['consolidate', badManifest, '--out', join(root, 'a.zrc')]);
    await expectOneClearLine(r, /CheckpointError: .*manifest\.json/);
    const truncated = join(root, 'truncated');
    cpSync(saved, truncated, { recursive: true });
    truncateSync(join(truncated, 'shard-rank0.bin'), 100);
    const t = await runCli(['consolidate', truncated, '--out', join(root, 'b.zrc')]);
    await expectOneClearLine(t, /CheckpointError: .*shard-rank0\.bin/);
  });

  it('train --nproc 2 on a busy --master-port', async () => {
    const r = await runCli(['train', '--nproc', '2', '--master-port', String(busyPort), ...quick]);
    await expectOneClearLine(
      r,
      new RegExp(`ConfigError: cannot listen for the store on 127\\.0\\.0\\.1:${busyPort}: the port is already in use`),
    );
  });

  it('prints the stack trace at --log-level debug', async () => {
    const r = await runCli(['sample', '--checkpoint', empty, '--log-level', 'debug']);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/CheckpointError: no complete checkpoint at/);
    expect(r.output).toMatch(/at .*checkpoint\.(ts|js):\d+/);
  });
});
