// A short soak (benchmarks/soak/main.ts): a few hundred random collectives with random delays on 2 and
// 3 ranks while a stranger knocks on the store and ring ports with wrong tokens, garbage,
// oversized and text frames, forged MACs, raw bytes and dropped handshakes. Every result must be
// right, every attempt rejected the way the endpoint must reject it, the rejections logged, and
// every worker must end cleanly. (The long run with figures is the benchmark.)
import { describe, expect, it } from 'vitest';
import { soakOne } from '../benchmarks/soak/main.ts';

describe('soak: random collectives under a knocking stranger', () => {
  for (const n of [2, 3]) {
    it(`${n} ranks`, async () => {
      const r = await soakOne(n, {
        ranks: [n],
        collectives: 400,
        seconds: 60,
        maxDelayMs: 3,
        maxElems: 1 << 15,
        seed: 7,
        faultRate: 25,
      });
      const why = JSON.stringify({ ...r, byKind: undefined }, null, 1);
      expect(r.workersOk, why).toBe(true);
      expect(r.hung, why).toBe(false);
      expect(r.collectives, why).toBeGreaterThanOrEqual(400);
      expect(r.wrong, why).toBe(0);
      expect(r.faultsInjected, why).toBeGreaterThan(0);
      expect(r.faultsRejected, why).toBe(r.faultsInjected);
      expect(r.faultsSurvived, why).toBe(r.faultsInjected);
      expect(r.loggedRejections, why).toBeGreaterThan(0);
    }, 300_000);
  }
});
