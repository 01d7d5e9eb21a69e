// The hierarchical all-reduce over real processes, with nodes emulated on this machine the way a
// multi-node job starts: one `zeroring launch --nnodes M --node-rank R` per node on loopback
// (GROUP_RANK tells the nodes apart), elastic launchers for nodes of different sizes, and one
// run in network namespaces where inter-node bytes cross a real bridge. The worker
// (fixtures/comm/hier-worker.ts) checks every op on lengths 0, 1 and odd ones against a plain
// reference, integer sums bit for bit against the flat ring of a subgroup of the same ranks,
// counts the payload bytes each sends across nodes, and ends with a mismatched call; in another
// run a rank is killed in the middle of a hierarchical all-reduce.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { leftovers, newMarker, runCli, type CliResult } from './fixtures/cli.ts';
import { explain, freePort, runJob } from './fixtures/comm/spawn.ts';
import { cannotMakeNamespaces, Hosts } from './fixtures/faults/netns.ts';

const WORKER = 'tests/fixtures/comm/hier-worker.ts';
const WORKER_PATH = fileURLToPath(new URL('./fixtures/comm/hier-worker.ts', import.meta.url));
/** The byte count's buffer: odd, so no slice splits evenly. */
const B = 100_003;
const COMMON = {
  // Every size through the ring (0 and 1 included), and chunks small enough that 65537 floats
  // take several per segment.
  ZERORING_SMALL_ALLREDUCE_BYTES: '0',
  ZERORING_CHUNK_BYTES: String(64 * 1024),
  BYTES_LEN: String(B),
};

interface Result {
  rank: number;
  topology: { nodes: number; hierarchical: boolean };
  links: { prev: string; next: string };
  failures: string[];
  hashes: number[];
  checks: number;
  bytes: Record<'world' | 'flat', { interNode: number; intraNode: number }>;
  mismatch: { name: string; message: string } | null;
}

interface NodeRun {
  /** Workers this launcher starts. */
  nproc: number;
  /** A command that runs it in a host of its own (ip netns exec). */
  prefix?: string[];
}

/**
 * One launcher per node, all at once: fixed (--nnodes M --node-rank R) when every node has the
 * same size, else elastic (--nnodes M:M, node ranks by arrival).
 */
async function launchNodes(
  nodes: NodeRun[],
  env: Record<string, string>,
  masterAddr = '127.0.0.1',
): Promise<{ runs: CliResult[]; results: Result[]; text: string }> {
  const port = await freePort();
  const marker = newMarker();
  const token = randomBytes(16).toString('hex');
  const fixed = nodes.every((n) => n.nproc === nodes[0]!.nproc);
  const runs = await Promise.all(
    nodes.map((n, i) => {
      const where = fixed ? ['--nnodes', String(nodes.length), '--node-rank', String(i)] : ['--nnodes', '2:2'];
      const args = ['launch', '--nproc-per-node', String(n.nproc), ...where, '--master-addr', masterAddr];
      return runCli([...args, '--master-port', String(port), WORKER], {
        env: { ZERORING_TOKEN: token, ...COMMON, ...env },
        prefix: n.prefix,
        marker,
        timeoutMs: 120_000,
      });
    }),
  );
  const text = runs.map((r, i) => `--- node ${i} (code ${r.code})\n${r.output.slice(-6000)}`).join('\n');
  const results = runs
    .flatMap((r) => [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]!) as Result))
    .sort((a, b) => a.rank - b.rank);
  expect(await leftovers(marker), 'processes left behind').toEqual([]);
  return { runs, results, text };
}

/** Floats in each of `parts` segments of n, cut as the ring cuts them (packages/comm/src/collectives/plan.ts). */
const split = (n: number, parts: number) =>
  Array.from({ length: parts }, (_, i) => Math.floor(((i + 1) * n) / parts) - Math.floor((i * n) / parts));

/**
 * Payload bytes rank r sends in a ring all-reduce of n floats over `parts` ranks: its
 * reduce-scatter sends every segment but its own, its all-gather every one but the next rank's.
 */
function ringSent(n: number, parts: number, r: number): number {
  const s = split(n, parts);
  return 4 * (2 * n - s[r]! - s[(r + 1) % parts]!);
}

/**
 * Everything a regular layout of M nodes × L ranks must show (rank = node · L + local, as
 * launched), after `lengths` rounds of 7 checks (integer sum, bfloat16 sum, broadcast, the four ops).
 */
function expectRegular(results: Result[], M: number, L: number, lengths: number, text: string): void {
  const N = M * L;
  expect(
    results.map((r) => r.rank),
    text,
  ).toEqual(Array.from({ length: N }, (_, r) => r));
  for (const r of results) {
    expect(r.topology, text).toEqual({ nodes: M, hierarchical: true });
    expect(r.failures, text).toEqual([]);
    expect(r.checks).toBe(7 * lengths);
    // Same bits everywhere (DDP relies on it).
    expect(r.hashes).toEqual(results[0]!.hashes);
    // The contract on a mismatched call holds: the same typed error on every rank.
    expect(r.mismatch?.name, text).toBe('CollectiveMismatchError');
    expect(r.mismatch?.message).toMatch(/called allReduce #\d+ \(10[01] x float32 op=sum\)/);
  }
  const rows: string[] = [];
  for (const { rank, bytes } of results) {
    const node = Math.floor(rank / L);
    const local = rank % L;
    // Flat ring: only the last rank of a node sends to another node, all of its 2(N-1)/N share.
    const flat = ringSent(B, N, rank);
    expect(bytes.flat, `rank ${rank}`).toEqual(
      local === L - 1 ? { interNode: flat, intraNode: 0 } : { interNode: 0, intraNode: flat },
    );
    // Hierarchical: each rank all-reduces its 1/L slice across the nodes; the rest stays in the node.
    const slice = split(B, L)[local]!;
    expect(bytes.world, `rank ${rank}`).toEqual({
      interNode: ringSent(slice, M, node),
      intraNode: ringSent(B, L, local),
    });
    rows.push(`rank ${rank}: flat ${bytes.flat.interNode} B across, hierarchical ${bytes.world.interNode} B across`);
  }
  // What the hierarchy buys: every rank's inter-node link carries at most 1/L of the flat ring's
  // busiest one (2(M-1)/M against 2(N-1)/N of the buffer, so a little less than that), and a node
  // sends B·2(M-1)/M across in all, what a flat ring over one rank per node would send per rank.
  const flatMax = Math.max(...results.map((r) => r.bytes.flat.interNode));
  const hierMax = Math.max(...results.map((r) => r.bytes.world.interNode));
  expect(hierMax * L).toBeLessThanOrEqual(flatMax);
  for (let node = 0; node < M; node++) {
    const sent = results
      .filter((r) => Math.floor(r.rank / L) === node)
      .reduce((a, r) => a + r.bytes.world.interNode, 0);
    expect(Math.abs(sent - (4 * B * 2 * (M - 1)) / M)).toBeLessThanOrEqual(4 * 2 * L);
  }
  console.log(
    `${M} nodes x ${L} ranks, all-reduce of ${4 * B} B: busiest inter-node link ${flatMax} B flat, ` +
      `${hierMax} B hierarchical (${(flatMax / hierMax).toFixed(2)}x less)\n  ${rows.join('\n  ')}`,
  );
}

describe('hierarchical all-reduce over real processes, nodes emulated on loopback', () => {
  it('2 nodes x 2 ranks (zeroring launch --nnodes 2 --node-rank R): correct, bytes across nodes / L', async () => {
    const { runs, results, text } = await launchNodes([{ nproc: 2 }, { nproc: 2 }], {});
    for (const r of runs) expect(r.code, text).toBe(0);
    expectRegular(results, 2, 2, 11, text);
  }, 150_000);

  it('3 nodes x 2 ranks, large payloads through shared memory (ZERORING_SHM=1, chunks of 128 KiB)', async () => {
    const nodes = [{ nproc: 2 }, { nproc: 2 }, { nproc: 2 }];
    const env = { ZERORING_SHM: '1', ZERORING_CHUNK_BYTES: String(128 * 1024), CHECK_LENGTHS: '0,1,3,97,65537' };
    const { runs, results, text } = await launchNodes(nodes, env);
    for (const r of runs) expect(r.code, text).toBe(0);
    expectRegular(results, 3, 2, 5, text);
    // One machine: every link may share memory (the node rings' links are made the same way).
    for (const r of results) expect(r.links).toEqual({ prev: 'shm', next: 'shm' });
  }, 150_000);

  it('2 nodes of 1 and 3 ranks: irregular, so the flat ring (logged); still correct', async () => {
    const { runs, results, text } = await launchNodes([{ nproc: 1 }, { nproc: 3 }], { ZERORING_LOG_LEVEL: 'debug' });
    for (const r of runs) expect(r.code, text).toBe(0);
    expect(results.map((r) => r.rank)).toEqual([0, 1, 2, 3]);
    for (const r of results) {
      expect(r.topology, text).toEqual({ nodes: 2, hierarchical: false });
      expect(r.failures, text).toEqual([]);
      expect(r.checks).toBe(7 * 11);
      expect(r.hashes).toEqual(results[0]!.hashes);
      expect(r.mismatch?.name, text).toBe('CollectiveMismatchError');
      // The world group is the flat ring: the same bytes as the flat subgroup.
      expect(r.bytes.world).toEqual(r.bytes.flat);
    }
    // Node ranks follow the launchers' arrival: either node may come first.
    expect(text).toMatch(/all-reduce: flat ring \(irregular layout \(2 nodes of (1, 3|3, 1) ranks\)\)/);
  }, 150_000);

  it('ZERORING_HIERARCHICAL=1 on nodes of 1 and 3 ranks: ConfigError naming the layout on every rank', async () => {
    // Started by hand with the launcher's environment (rank 0 alone on node 0, ranks 1-3 on
    // node 1), so that no launcher stops a rank before it has said why it refuses.
    const rs = await runJob({
      worldSize: 4,
      scenario: 'refused',
      worker: WORKER_PATH,
      env: { ZERORING_HIERARCHICAL: '1' },
      rankEnv: (rank) => ({
        GROUP_RANK: rank === 0 ? '0' : '1',
        LOCAL_RANK: String(rank === 0 ? 0 : rank - 1),
        LOCAL_WORLD_SIZE: rank === 0 ? '1' : '3',
      }),
      timeoutMs: 90_000,
    });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(1);
      expect(r.result, why).toBeNull();
      expect(r.stderr + r.stdout, why).toMatch(
        /ConfigError: ZERORING_HIERARCHICAL=1, but the layout is 2 nodes of 1, 3 ranks, expected 2 or more nodes/,
      );
    }
  }, 120_000);
});

describe('hierarchical all-reduce: a rank lost in the middle', () => {
  it('2 nodes x 2 ranks, rank 3 killed during a 32 MiB all-reduce: PeerLostError on every other rank', async () => {
    // Started by hand with the launcher's environment (GROUP_RANK: the node), so that no launcher
    // stops the survivors before they report.
    const rs = await runJob({
      worldSize: 4,
      scenario: 'kill',
      worker: WORKER_PATH,
      env: { KILL_RANK: '3', ZERORING_TIMEOUT_MS: '30000' },
      rankEnv: (rank) => ({
        GROUP_RANK: String(rank >> 1),
        LOCAL_RANK: String(rank & 1),
        LOCAL_WORLD_SIZE: '2',
      }),
      timeoutMs: 90_000,
    });
    const why = explain(rs);
    expect(rs[3]!.signal, why).toBe('SIGKILL');
    for (const r of rs.slice(0, 3)) {
      expect(r.code, why).toBe(0);
      const k = (r.result as { killed: { name: string; message: string; ms: number } }).killed;
      expect(k.name, why).toBe('PeerLostError');
      expect(k.message, why).toMatch(/rank \d lost/);
      // Noticed through the closed sockets, not the timeout.
      expect(k.ms, why).toBeLessThan(15_000);
    }
  }, 120_000);
});

// Namespaces on one machine still share /dev/shm, which separate hosts do not: ZERORING_SHM=0
// keeps every payload between them on the bridge, as between real hosts.
const why = cannotMakeNamespaces();
if (why && process.env.CI) throw new Error(`CI runs the multi-node tests, but cannot make network namespaces: ${why}`);
if (why) {
  describe('hierarchical all-reduce over network namespaces', () => {
    it.skip(`skipped: cannot make network namespaces here (${why})`, () => {});
  });
} else {
  describe('hierarchical all-reduce over network namespaces', () => {
    const hosts = new Hosts(2);
    beforeAll(() => hosts.up());
    afterAll(() => hosts.down());

    it('2 hosts x 2 ranks: correct, bytes across hosts / L', async () => {
      const nodes = [0, 1].map((i) => ({ nproc: 2, prefix: hosts.exec(i) }));
      const env = { ZERORING_SHM: '0', CHECK_LENGTHS: '0,1,3,97,16411' };
      const { runs, results, text } = await launchNodes(nodes, env, hosts.addr(0));
      for (const r of runs) expect(r.code, text).toBe(0);
      expectRegular(results, 2, 2, 5, text);
      for (const r of results) expect(r.links).toEqual({ prev: 'tcp', next: 'tcp' });
    }, 150_000);
  });
}
