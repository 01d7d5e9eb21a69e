// The emulated links of scripts/netns.sh, measured: two hosts (network namespaces), host 1's link
// given each profile in turn, and real TCP between them (tests/fixtures/faults/link-probe.mjs, one
// end in each namespace): a bulk transfer for the rate, one-byte round trips for the delay, the
// sender's TCP retransmits and the link's drop counter for the loss. Printed per profile; asserted
// where this machine can reach the profile:
// - 1g and wan: throughput within ±20 % of the rate (payload over the steady part of 3 s, after 1 s
//   of ramp-up; tbf counts headers too, so ~95 % is the ceiling).
// - wan: the smallest round trip within [40, 50) ms (20 ms each way; the least of 20 is the one a
//   loaded 2-core machine delayed least). 1g and 10g: at least their 1 ms / 0.2 ms.
// - 10g: this VM moves 2-8 Gbit/s over a bare veth pair (what the other processes leave it), so
//   10 Gbit/s ±20 % is asserted only where the bare link reaches 12; here the figure is printed.
// - wan-loss: the transfer completes, the link dropped packets (0.1 % of ~25 000), the sender
//   retransmitted; once with the BPF program, once with the iptables fallback.
// - unshape: the round trip is back under 5 ms, the relay is gone.
// Skipped with the reason in the name where namespaces cannot be made or links cannot be shaped
// (no tc, iptables or C compiler); under CI that fails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  cannotMakeNamespaces,
  cannotShapeLinks,
  Hosts,
  type LinkProfile,
  type LinkShape,
} from './fixtures/faults/netns.ts';

const why = cannotMakeNamespaces() ?? cannotShapeLinks();
const probe = fileURLToPath(new URL('./fixtures/faults/link-probe.mjs', import.meta.url));
const hosts = new Hosts(2);
const SECS = 3;
const ROUND_TRIPS = 20;
const PORT = 20000 + Math.floor(Math.random() * 20000);
let server: ReturnType<typeof probeIn> | undefined;

/**
 * link-probe.mjs in host i; `ready` resolves on its {listening} line, `done` with its last JSON
 * line. Killed after timeoutMs (a measurement that hangs fails instead of the whole run).
 */
function probeIn(i: number, args: string[], timeoutMs = 30_000) {
  const child = spawn(hosts.exec(i)[0]!, [...hosts.exec(i).slice(1), process.execPath, probe, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('"listening"')) ready();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !last.startsWith('{'))
        reject(new Error(`link-probe ${args.join(' ')}: ${code ?? signal} ${err}`));
      else resolve(JSON.parse(last) as Record<string, unknown>);
    });
  });
  return { child, ready: readyP, done };
}

/** From host 1 to host 0's server: round trips (ms) and the payload rate after the first second. */
async function probeLink(): Promise<{ rtts: number[]; mbps: number; bytes: number }> {
  const r = await probeIn(1, ['measure', hosts.addr(0), String(PORT), String(ROUND_TRIPS), String(SECS)]).done;
  const samples = r.samples as Array<[number, number]>;
  const from = samples.find(([ms]) => ms >= 1000)!;
  const to = samples.at(-1)!;
  const mbps = ((to[1] - from[1]) * 8) / (to[0] - from[0]) / 1000;
  return { rtts: r.rtts as number[], mbps, bytes: r.bytes as number };
}

/** TCP counters of host i's namespace (absolute, no nstat history file). */
function tcp(i: number): { out: number; retrans: number } {
  const r = spawnSync(hosts.exec(i)[0]!, [...hosts.exec(i).slice(1), 'nstat', '-asz', 'TcpOutSegs', 'TcpRetransSegs'], {
    encoding: 'utf8',
  });
  const get = (k: string) => Number(new RegExp(`${k}\\s+(\\d+)`).exec(r.stdout)?.[1] ?? NaN);
  return { out: get('TcpOutSegs'), retrans: get('TcpRetransSegs') };
}

interface Measured {
  shape?: LinkShape;
  mbps: number;
  bytes: number;
  rttMin: number;
  rttMedian: number;
  segs: number;
  retrans: number;
  drops: number;
}

async function measure(profile: LinkProfile | 'none', opts: { loss?: 'bpf' | 'iptables' } = {}): Promise<Measured> {
  hosts.unshape(1);
  const shape = profile === 'none' ? undefined : hosts.shape(1, profile, opts);
  const before = tcp(1);
  const dropsBefore = hosts.drops(1);
  const t = await probeLink();
  const after = tcp(1);
  const rt = t.rtts.sort((a, b) => a - b);
  const m: Measured = {
    shape,
    mbps: t.mbps,
    bytes: t.bytes,
    rttMin: rt[0]!,
    rttMedian: rt[rt.length >> 1]!,
    segs: after.out - before.out,
    retrans: after.retrans - before.retrans,
    drops: hosts.drops(1) - dropsBefore,
  };
  const how = shape ? `rate ${shape.rate.by}, delay ${shape.delay.by}, loss ${shape.loss.by}` : 'bare veth';
  console.log(
    `link ${profile.padEnd(8)} ${t.mbps.toFixed(0).padStart(5)} Mbit/s, rtt min ${m.rttMin.toFixed(2)} ms ` +
      `median ${m.rttMedian.toFixed(2)} ms, ${m.retrans} retransmits of ${m.segs} segments, ` +
      `${m.drops} dropped by the link (${how})`,
  );
  return m;
}

/**
 * Measures the profile, and once more when the rate came out under `floor` Mbit/s: on this shared
 * 2-core machine another process can starve one transfer (a shaper that is too fast still fails).
 */
async function measureAbove(profile: LinkProfile, floor: number): Promise<Measured> {
  const m = await measure(profile);
  return m.mbps > floor ? m : measure(profile);
}

const within = (x: number, target: number, tol: number) => {
  expect(x).toBeGreaterThan(target * (1 - tol));
  expect(x).toBeLessThan(target * (1 + tol));
};

// CI runs as root with scripts/setup.sh's packages: there a missing piece is a failure, not a skip.
if (why && process.env.CI) throw new Error(`CI runs the link tests, but cannot shape links here: ${why}`);
if (why) {
  describe('emulated links between network namespaces', () => {
    it.skip(`skipped: cannot shape links here (${why})`, () => {});
  });
} else {
  describe('emulated links between network namespaces', () => {
    let bare: Measured;
    beforeAll(async () => {
      hosts.up();
      server = probeIn(0, ['serve', String(PORT)], 300_000);
      server.done.catch(() => {}); // killed at the end
      await server.ready;
      bare = await measure('none');
    }, 60_000);
    afterAll(() => {
      server?.child.kill('SIGKILL');
      hosts.down();
    });

    it('1g: 1 Gbit/s ±20 %, at least 1 ms round trip; each property names its mechanism', async () => {
      const m = await measureAbove('1g', 800);
      expect(m.shape).toMatchObject({
        rate: { value: '1gbit', by: 'tbf' },
        delay: { value: '500us', by: 'nfqueue' },
        loss: { value: '0', by: 'none' },
      });
      within(m.mbps, 1000, 0.2);
      expect(m.rttMin).toBeGreaterThanOrEqual(1);
    }, 60_000);

    it('wan: 100 Mbit/s ±20 %, round trip 40 ms', async () => {
      const m = await measureAbove('wan', 80);
      expect(m.shape).toMatchObject({ rate: { value: '100mbit' }, delay: { value: '20000us' } });
      within(m.mbps, 100, 0.2);
      expect(m.rttMin).toBeGreaterThanOrEqual(40);
      expect(m.rttMin).toBeLessThan(50);
    }, 60_000);

    it('10g: rate measured and printed (this VM cannot reach it), at least 0.2 ms round trip', async () => {
      const m = await measure('10g');
      console.log(`link bare veth moves ${bare.mbps.toFixed(0)} Mbit/s here; 10g profile ${m.mbps.toFixed(0)}`);
      expect(m.shape).toMatchObject({ rate: { value: '10gbit', by: 'tbf' }, delay: { value: '100us' } });
      if (bare.mbps >= 12_000) within(m.mbps, 10_000, 0.2);
      expect(m.rttMin).toBeGreaterThanOrEqual(0.2);
    }, 60_000);

    for (const loss of ['bpf', 'iptables'] as const) {
      it(`wan-loss (${loss}): completes, the link drops packets, the sender retransmits`, async () => {
        const m = await measure('wan-loss', { loss });
        // setup.sh installs clang and libbpf-dev: under CI the loss must be the BPF program's.
        if (loss === 'iptables' || process.env.CI) expect(m.shape!.loss).toMatchObject({ value: '0.1%', by: loss });
        expect(m.mbps).toBeGreaterThan(20);
        expect(m.rttMin).toBeGreaterThanOrEqual(40);
        // ~25 000 segments at 0.1 % each way: 25 expected; 0 or over 1 % would be no loss or wrong loss.
        expect(m.drops).toBeGreaterThan(0);
        expect(m.drops).toBeLessThan(m.segs / 100);
        expect(m.retrans).toBeGreaterThan(0);
      }, 60_000);
    }

    it('unshape: back to the bare link, no relay left', async () => {
      const m = await measure('none');
      expect(m.rttMin).toBeLessThan(5);
      server!.child.kill('SIGKILL');
      await server!.done.catch(() => {});
      expect(hosts.pids(0)).toEqual([]);
      expect(spawnSync('ip', ['netns', 'pids', `zr-${hosts.id}-sw`], { encoding: 'utf8' }).stdout.trim()).toBe('');
    }, 60_000);
  });
}
