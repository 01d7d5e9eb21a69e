// Starts `n` ranks of a benchmark script on this machine, each a copy of this process (same node
// flags) with the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a fresh
// job token, and waits for all of them to exit. For the micro-benchmarks that are their own worker.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export async function runRanks(
  script: string,
  n: number,
  port: number,
  extraEnv: Record<string, string | undefined> = {},
): Promise<void> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...extraEnv,
    WORLD_SIZE: String(n),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
    ZERORING_TOKEN: randomBytes(16).toString('hex'),
  };
  const kids = Array.from({ length: n }, (_, r) =>
    spawn(process.execPath, [...process.execArgv, script], { stdio: 'inherit', env: { ...env, RANK: String(r) } }),
  );
  await Promise.all(kids.map((k) => new Promise((r) => k.on('exit', r))));
}
