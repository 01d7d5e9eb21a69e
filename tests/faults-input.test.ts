// Bad input gets a clear, typed error that names the bad value and the expected one, quickly and
// without hanging: ranks and world sizes out of range, a wrong master port (nothing listening, or
// something that is not a zeroring store), a taken port, buffers of the wrong dtype, and bad
// launcher / train flags. (Two workers claiming one rank, world sizes that disagree and
// mismatched collectives are covered in comm-failures.test.ts; NaN gradients in faults-train.)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { leftovers, runCli } from './fixtures/cli.ts';

const WORKER = fileURLToPath(new URL('./fixtures/faults/init-worker.ts', import.meta.url));

interface Result {
  code: number | null;
  out: string;
  result: {
    initError?: { name: string; message: string };
    errors?: Array<{ name: string; message: string } | null>;
    ms: number;
  } | null;
}

function worker(env: Record<string, string>, scenario = 'init'): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, scenario], {
      env: {
        ...process.env,
        ZERORING_LOG_FORMAT: 'json',
        ZERORING_LOG_LEVEL: 'error',
        MASTER_ADDR: '127.0.0.1',
        ZERORING_TOKEN: randomBytes(16).toString('hex'),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      const m = /^RESULT (.*)$/m.exec(out);
      resolve({ code, out, result: m ? JSON.parse(m[1]!) : null });
    });
  });
}

function listenOn(server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

async function freePort(): Promise<number> {
  const s = createServer();
  const p = await listenOn(s);
  await new Promise((r) => s.close(r));
  return p;
}

describe('bad input: typed errors naming the value and the expected one', () => {
  it('rank / world size out of range or not a number', async () => {
    const port = String(await freePort());
    const [hi, neg, zero, nan] = await Promise.all([
      worker({ RANK: '2', WORLD_SIZE: '2', MASTER_PORT: port }),
      worker({ RANK: '-1', WORLD_SIZE: '2', MASTER_PORT: port }),
      worker({ RANK: '0', WORLD_SIZE: '0', MASTER_PORT: port }),
      worker({ RANK: '0', WORLD_SIZE: 'two', MASTER_PORT: port }),
    ]);
    expect(hi.result?.initError, hi.out).toEqual({
      name: 'ConfigError',
      message: 'RANK=2 is out of range for WORLD_SIZE=2, expected 0..1',
    });
    expect(neg.result?.initError?.message, neg.out).toBe('RANK=-1 is out of range for WORLD_SIZE=2, expected 0..1');
    expect(zero.result?.initError, zero.out).toEqual({
      name: 'ConfigError',
      message: 'WORLD_SIZE=0 is out of range, expected an integer >= 1',
    });
    expect(nan.result?.initError, nan.out).toEqual({
      name: 'ConfigError',
      message: 'WORLD_SIZE="two" is not an integer',
    });
  });

  it('a wrong master port, nothing listening: CommTimeoutError naming the address within the timeout', async () => {
    const port = await freePort();
    const r = await worker({
      RANK: '1',
      WORLD_SIZE: '2',
      MASTER_PORT: String(port),
      ZERORING_RENDEZVOUS_TIMEOUT_MS: '3000',
    });
    expect(r.result?.initError?.name, r.out).toBe('CommTimeoutError');
    expect(r.result?.initError?.message).toMatch(
      new RegExp(
        `could not reach the rendezvous store at 127\\.0\\.0\\.1:${port} within 3000 ms \\(last error: .*ECONNREFUSED`,
      ),
    );
    expect(r.result?.initError?.message).toMatch(/are MASTER_ADDR\/MASTER_PORT the same on every worker/);
    expect(r.result!.ms).toBeGreaterThanOrEqual(2500);
    expect(r.result!.ms).toBeLessThan(30_000);
  });

  it('a master port where something else listens: ConfigError at once (HTTP server; rank 0 on it)', async () => {
    const http = createHttpServer((_q, s) => s.end('not zeroring'));
    const httpPort = await listenOn(http);
    const tcp = createServer();
    const tcpPort = await listenOn(tcp);
    try {
      const [client, host] = await Promise.all([
        worker({ RANK: '1', WORLD_SIZE: '2', MASTER_PORT: String(httpPort), ZERORING_RENDEZVOUS_TIMEOUT_MS: '60000' }),
        worker({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: String(tcpPort) }),
      ]);
      expect(client.result?.initError?.name, client.out).toBe('ConfigError');
      expect(client.result?.initError?.message).toMatch(
        new RegExp(`127\\.0\\.0\\.1:${httpPort} is not a zeroring store endpoint \\(HTTP 200`),
      );
      expect(client.result!.ms).toBeLessThan(30_000);
      expect(host.result?.initError?.name, host.out).toBe('ConfigError');
      expect(host.result?.initError?.message).toMatch(
        new RegExp(`127\\.0\\.0\\.1:${tcpPort}: the port is already in use`),
      );
    } finally {
      http.close();
      tcp.close();
    }
  });

  it('buffers of the wrong dtype: ConfigError naming the type', async () => {
    const r = await worker({ RANK: '0', WORLD_SIZE: '1', MASTER_PORT: String(await freePort()) }, 'dtype');
    expect(r.result?.errors, r.out).toEqual([
      { name: 'ConfigError', message: 'allReduce: buf must be a Float32Array, got Float64Array' },
      { name: 'ConfigError', message: 'allReduce: buf must be a Float32Array, got Int32Array' },
      { name: 'ConfigError', message: 'allReduce: buf must be a Float32Array, got Array' },
    ]);
  });

  it('bad launcher and train flags name the value', async () => {
    const [nproc, nodeRank, port] = await Promise.all([
      runCli(['launch', '--nproc-per-node', '0', 'x.ts']),
      runCli('train --nproc 1 --nnodes 2 --node-rank 2 --master-addr 10.213.0.1 --master-port 29500'.split(' '), {
        env: { ZERORING_TOKEN: 't' },
      }),
      runCli(['launch', '--nproc-per-node', '1', '--master-port', '70000', 'x.ts']),
    ]);
    expect(nproc.code).not.toBe(0);
    expect(nproc.output).toMatch(/--nproc-per-node '0' is not an integer in \[1, ∞\]/);
    expect(nodeRank.code).not.toBe(0);
    expect(nodeRank.output).toMatch(/node-rank is 2, expected an integer in \[0, 1\]/);
    expect(port.code).not.toBe(0);
    expect(port.output).toMatch(/--master-port '70000' is not an integer in \[1, 65535\]/);
    for (const r of [nproc, nodeRank, port]) expect(await leftovers(r.marker)).toEqual([]);
  });
});
