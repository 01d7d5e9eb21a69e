// The rank claims of the store's `join`, per rendezvous (a key prefix, one per restart): a
// second live worker with the same rank, or a different world size, breaks the rendezvous for
// everyone with a ConfigError that names both workers; a worker refused for another token
// breaks it with an AuthError (see judgeRefusals). A broken rendezvous is pushed to every
// member at once, so that nobody waits out the timeout.
import { pack } from 'msgpackr';
import type { Logger } from '@zeroring/core';
import { AuthError, ConfigError, toWire, type ZeroringError } from '../errors.ts';
import type { Conn } from '../transport/conn.ts';
import type { StoreResponse } from './protocol.ts';

/** Refusals kept for judging: a few dozen covers any job; a knocking stranger cannot grow it. */
const MAX_REFUSALS = 64;

interface Group {
  worldSize: number;
  claims: Map<number, Conn>;
  /** When the first of the current claims was made: refusals long before belong to another job. */
  startedAt: number;
  /** Every rank has joined once: the world exists, and a refusal from now on is a stranger's. */
  formed: boolean;
  /** Why the rendezvous broke; a worker joining later gets the same error at once. */
  broken: ZeroringError | null;
}

/** A client refused for a wrong proof of the token, and the rank that it claimed. */
interface Refusal {
  remote: string;
  rank: number;
  at: number;
}

export class Membership {
  private readonly groups = new Map<string, Group>();
  private readonly refusals: Refusal[] = [];
  private judgeTimer: NodeJS.Timeout | undefined;
  private judgeAt = Infinity;

  constructor(
    /** How long a forming rendezvous still waits for a rank refused for a wrong token. */
    private readonly graceMs: number,
    private readonly log: Logger,
    /** Where the store listens, for the errors it gives. */
    public where: string,
  ) {}

  /** Claims `rank` of the rendezvous `prefix` for c; the error to answer with, if the claim breaks it. */
  join(c: Conn, prefix: string, rank: number, worldSize: number): StoreResponse['e'] | undefined {
    let g = this.groups.get(prefix);
    if (!g) {
      g = { worldSize, claims: new Map(), startedAt: Date.now(), formed: false, broken: null };
      this.groups.set(prefix, g);
    }
    if (g.broken) {
      // The members were told; a worker that comes later must not wait out the timeout either.
      c.send(pack({ t: 'fatal', e: toWire(g.broken) }));
      return toWire(g.broken);
    }
    if (g.claims.size === 0) {
      // Nobody holds a rank (all left, or none came yet): a world starts forming afresh.
      Object.assign(g, { worldSize, startedAt: Date.now(), formed: false });
    }
    const conflict = this.conflict(g, c, rank, worldSize);
    if (conflict) {
      this.breakGroup(g, conflict, [c]);
      return toWire(conflict);
    }
    g.claims.set(rank, c);
    if (g.claims.size === g.worldSize) g.formed = true;
    c.onClose(() => {
      if (g.claims.get(rank) === c) g.claims.delete(rank);
    });
    // Refusals made before this group existed may concern it.
    if (!g.formed && this.refusals.length > 0) this.judgeRefusals();
    return undefined;
  }

  /** A client sent a well-formed handshake with a wrong proof of the token, claiming `rank`. */
  onWrongProof(remote: string, rank: number): void {
    if (rank < 0) return; // not a rank at all (a launcher or a tool): no world waits for it
    this.refusals.push({ remote, rank, at: Date.now() });
    if (this.refusals.length > MAX_REFUSALS) this.refusals.shift();
    this.judgeRefusals();
  }

  stop(): void {
    clearTimeout(this.judgeTimer);
  }

  /** Why c may not claim `rank` in g: another world size, or a rank a live worker holds. */
  private conflict(g: Group, c: Conn, rank: number, worldSize: number): ConfigError | null {
    if (worldSize !== g.worldSize) {
      return new ConfigError(
        `worker at ${c.remote} says WORLD_SIZE=${worldSize} but the other workers say ` +
          `WORLD_SIZE=${g.worldSize} (expected the same world size on every worker)`,
      );
    }
    const prev = g.claims.get(rank);
    if (prev && !prev.closed) {
      return new ConfigError(
        `two workers claim RANK=${rank}: ${prev.remote} and ${c.remote} ` +
          `(expected each rank 0..${worldSize - 1} exactly once)`,
      );
    }
    return null;
  }

  private breakGroup(g: Group, e: ZeroringError, also: Conn[]): void {
    // Every member reports it (the store's own rank too): here it is only a trace.
    this.log.debug({ err: e.message }, 'rendezvous broken');
    g.broken = e;
    const msg = pack({ t: 'fatal', e: toWire(e) });
    for (const c of new Set([...g.claims.values(), ...also])) c.send(msg);
  }

  // A client that speaks the protocol and fails only the HMAC proof is, while a world forms,
  // almost always one of its workers started with another ZERORING_TOKEN. It was told so and
  // exits; the world can then never form, and the members would wait out the rendezvous timeout
  // (minutes) only to blame the address or the world size. So such a refusal breaks the forming
  // rendezvous with an AuthError for every member, under conditions that keep strangers from
  // using it against a healthy job:
  // - garbage, text frames, silence or raw TCP never count, only a well-formed wrong proof;
  // - only while the group forms: once every rank has joined, a refusal harms nobody;
  // - only for a rank the world still lacks (in range, not held by a live member), so a forged
  //   claim of a present rank, or of none (-1, a tool), changes nothing;
  // - only once that rank is still missing `graceMs` after the refusal, so that the right worker
  //   for it (a straggler, or one restarted with the right token) can still take it.
  // A stranger who knows the protocol and claims a missing rank while a world forms can still
  // make it fail: that is the price of failing fast, and the error names the address it came
  // from. The last condition also makes the wait explicit: a few seconds, not the timeout.
  private judgeRefusals(): void {
    const now = Date.now();
    for (const g of this.groups.values()) {
      if (g.formed || g.broken || g.claims.size === 0) continue;
      const mine = (r: Refusal) => r.at >= g.startedAt - this.graceMs && r.rank < g.worldSize;
      const missing = this.refusals.filter((r) => mine(r) && !g.claims.has(r.rank));
      const due = missing.find((r) => now - r.at >= this.graceMs);
      if (due) this.breakGroup(g, this.wrongTokenError(due, g), []);
      else for (const r of missing) this.scheduleJudge(r.at + this.graceMs);
    }
  }

  private scheduleJudge(at: number): void {
    if (at >= this.judgeAt) return;
    clearTimeout(this.judgeTimer);
    this.judgeAt = at;
    this.judgeTimer = setTimeout(
      () => {
        this.judgeTimer = undefined;
        this.judgeAt = Infinity;
        this.judgeRefusals();
      },
      Math.max(0, at - Date.now()),
    );
    // Never what keeps a process alive: the members' own connections do that.
    this.judgeTimer.unref();
  }

  private wrongTokenError(r: Refusal, g: Group): AuthError {
    return new AuthError(
      `the rendezvous store at ${this.where} refused a worker at ${r.remote} claiming RANK=${r.rank}: ` +
        `its ZERORING_TOKEN differs from the store's, so the world of WORLD_SIZE=${g.worldSize} cannot form ` +
        `(expected the same ZERORING_TOKEN on every worker)`,
    );
  }
}
