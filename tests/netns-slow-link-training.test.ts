// DDP between two hosts (network namespaces) over the emulated WAN (scripts/netns.sh profile `wan`:
// 100 Mbit/s, 20 ms each way), as users on such links run it: `zeroring train --nnodes 2` with each
// comm hook ends with finite, falling loss, and the shaped link really is slower: the same fp32 run
// over the plain veth waits far less on communication per step. Skipped with the reason in the
// name where namespaces cannot be made or links cannot be shaped; under CI that fails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from '@zeroring/train';
import { runCli } from './fixtures/cli.ts';
import { cannotMakeNamespaces, cannotShapeLinks, Hosts } from './fixtures/faults/netns.ts';

const why = cannotMakeNamespaces() ?? cannotShapeLinks();
if (why && process.env.CI) throw new Error(`slow-link training cannot run here: ${why}`);
const hosts = new Hosts(2);
const root = mkdtempSync(join(tmpdir(), 'zr-slow-link-'));
const token = randomBytes(16).toString('hex');
const STEPS = 4;

/** A 2-node run of tiny with `hook`; its metrics lines (host 0's, one --out for both). */
async function train(name: string, hook: string, extra: string[] = []): Promise<Array<Record<string, number>>> {
  const out = join(root, name);
  const port = String(20000 + Math.floor(Math.random() * 30000));
  const args = [
    ...['train', '--nproc', '1', '--nnodes', '2', '--master-addr', hosts.addr(0), '--master-port', port],
    ...['--backend', 'wasm', '--steps', String(STEPS), '--batch-size', '4', '--eval-interval', '100'],
    ...['--eval-batches', '1', '--sample-tokens', '0', '--seed', '5', '--warmup-steps', '1'],
    ...['--comm-hook', hook, ...extra, '--out', out],
  ];
  // Namespaces share /dev/shm, which separate hosts do not: ZERORING_SHM=0 keeps payloads on the link.
  const env = { ZERORING_TOKEN: token, ZERORING_SHM: '0', ZERORING_TIMEOUT_MS: '60000' };
  const rs = await Promise.all(
    [0, 1].map((i) => runCli([...args, '--node-rank', String(i)], { prefix: hosts.exec(i), env, timeoutMs: 180_000 })),
  );
  for (const r of rs) expect(r.code, r.output).toBe(0);
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

describe.skipIf(why !== null)(`DDP over an emulated WAN${why ? ` [SKIPPED: ${why}]` : ''}`, () => {
  let plainCommMs = 0;
  beforeAll(async () => {
    hosts.up();
    const plain = await train('plain', 'none');
    plainCommMs = median(plain.slice(1).map((l) => l.commMs!));
    hosts.shape(1, 'wan');
  }, 240_000);
  afterAll(() => {
    hosts.down();
    rmSync(root, { recursive: true, force: true });
  });

  for (const [hook, extra] of [
    ['none', []],
    ['bf16', []],
    ['fp16', []],
    ['powersgd', ['--powersgd-start', '1']],
  ] as const) {
    it(`--comm-hook ${hook}: finite, falling loss over the WAN`, async () => {
      const lines = await train(hook, hook, [...extra]);
      const losses = lines.map((l) => l.loss!);
      expect(losses).toHaveLength(STEPS);
      for (const l of losses) expect(Number.isFinite(l), `losses ${losses}`).toBe(true);
      expect(losses.at(-1)!, `losses ${losses}`).toBeLessThan(losses[0]! - 0.3);
      if (hook === 'none') {
        // tiny's 1.7 MB of gradients: about 0.14 s at 100 Mbit/s plus the 40 ms round trips of the
        // ring, against a few ms over the plain veth.
        const wanCommMs = median(lines.slice(1).map((l) => l.commMs!));
        expect(wanCommMs, `the plain veth's median wait: ${plainCommMs} ms`).toBeGreaterThan(3 * plainCommMs);
        expect(wanCommMs).toBeGreaterThan(100);
      }
    }, 240_000);
  }
});
