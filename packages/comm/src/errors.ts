// Typed errors of the communication layer. Each says what happened and where (which rank,
// which collective), so that a failure seen on one rank and forwarded to the others still
// reads well on every rank. They serialise to plain data (toWire/fromWire) because a failure
// detected on one rank travels around the ring to all the others.

export class ZeroringError extends Error {
  override name = 'ZeroringError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * A peer died, closed its connection or fell silent (no heartbeat within the timeout). Also
 * what store calls get once the rendezvous store's process (rank 0, or a launcher) is gone.
 */
export class PeerLostError extends ZeroringError {
  override name = 'PeerLostError';
  constructor(
    /** The rank that was lost (-1: a rendezvous store hosted outside the job). */
    readonly rank: number,
    /**
     * The call in flight when it was noticed (e.g. "allReduce #12", "store get('k')",
     * "rendezvous"), or null when idle.
     */
    readonly collective: string | null,
    readonly reason: string,
    /** The rank that noticed the loss. */
    readonly reportedBy: number,
  ) {
    super(
      `rank ${rank} lost (${reason})` +
        (collective ? ` during ${collective}` : ' while idle') +
        `; noticed by rank ${reportedBy}`,
    );
  }
}

/** Describes one side of a collective call, for mismatch reports. */
export interface CollectiveCall {
  seq: number;
  kind: string;
  op?: string;
  count: number;
  dtype: string;
  root?: number;
}

export function describeCall(c: CollectiveCall): string {
  const op = c.op ? ` op=${c.op}` : '';
  const root = c.root !== undefined ? ` root=${c.root}` : '';
  return `${c.kind} #${c.seq} (${c.count} x ${c.dtype}${op}${root})`;
}

/**
 * Two ranks called different collectives (op, size, dtype or root) at the same position, or a
 * send and its matching recv disagree on the size.
 */
export class CollectiveMismatchError extends ZeroringError {
  override name = 'CollectiveMismatchError';
  constructor(
    readonly rank: number,
    readonly call: CollectiveCall,
    readonly peerRank: number,
    readonly peerCall: CollectiveCall,
    /** What the user must do instead (point to point says how sends and recvs pair). */
    advice = 'all ranks must issue the same collectives in the same order',
  ) {
    super(
      `collective mismatch: rank ${rank} called ${describeCall(call)} but rank ${peerRank} ` +
        `called ${describeCall(peerCall)}; ${advice}`,
    );
  }
}

/** A collective (or the rendezvous) made no progress within the process group's timeout. */
export class CommTimeoutError extends ZeroringError {
  override name = 'CommTimeoutError';
  constructor(
    message: string,
    readonly timeoutMs: number,
    readonly rank: number | null = null,
  ) {
    super(message);
  }
}

/** A peer or the store failed the job-token challenge, or rejected ours. */
export class AuthError extends ZeroringError {
  override name = 'AuthError';
}

/** Bad configuration or arguments: names the bad value and the expected one. */
export class ConfigError extends ZeroringError {
  override name = 'ConfigError';
}

/** Plain-data form of an error, sent to the other ranks when this one fails. */
export interface WireError {
  name: string;
  message: string;
  fields?: Record<string, unknown>;
}

export function toWire(e: unknown): WireError {
  if (e instanceof PeerLostError)
    return {
      name: e.name,
      message: e.message,
      fields: { rank: e.rank, collective: e.collective, reason: e.reason, reportedBy: e.reportedBy },
    };
  if (e instanceof CollectiveMismatchError)
    return {
      name: e.name,
      message: e.message,
      fields: { rank: e.rank, call: e.call, peerRank: e.peerRank, peerCall: e.peerCall },
    };
  if (e instanceof CommTimeoutError)
    return { name: e.name, message: e.message, fields: { timeoutMs: e.timeoutMs, rank: e.rank } };
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'ZeroringError', message: String(e) };
}

/** Rebuilds the same error class on a rank that learnt of the failure from a neighbour. */
export function fromWire(w: WireError): ZeroringError {
  const f = w.fields ?? {};
  let e: ZeroringError;
  switch (w.name) {
    case 'PeerLostError':
      e = new PeerLostError(
        Number(f.rank),
        (f.collective as string | null) ?? null,
        String(f.reason),
        Number(f.reportedBy),
      );
      break;
    case 'CollectiveMismatchError':
      e = new CollectiveMismatchError(
        Number(f.rank),
        f.call as CollectiveCall,
        Number(f.peerRank),
        f.peerCall as CollectiveCall,
      );
      break;
    case 'CommTimeoutError':
      e = new CommTimeoutError(w.message, Number(f.timeoutMs), f.rank === null ? null : Number(f.rank));
      break;
    case 'AuthError':
      e = new AuthError(w.message);
      break;
    case 'ConfigError':
      e = new ConfigError(w.message);
      break;
    default:
      e = new ZeroringError(w.message);
  }
  e.message = w.message;
  return e;
}
