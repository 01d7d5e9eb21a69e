// The token handshake that opens every connection (conn.ts), a challenge–response in which
// both ends prove that they know the job token without sending it: the server sends a random
// nonce, the client answers with its own nonce and HMAC-SHA256(token, purpose|client|rank|
// nonces), the server checks it and answers with the server-side MAC, so that the client
// knows it reached the job and not an impostor. The purpose and the side are in the MAC, so a
// proof made for the store is no proof for a ring peer, nor a client's for a server's.
//
// Kept apart from the connection: this is the part to read when judging the security, and it
// does no I/O. The connection feeds it each message and does what the step says.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import { AuthError, ConfigError } from '../errors.ts';

export type Purpose = 'store' | 'peer';

/** Handshake messages are a few dozen bytes; anything bigger before auth is hostile. */
const PRE_AUTH_MAX_BYTES = 1024;
const PROTOCOL = 'zeroring/1';

/**
 * The close reason sent to a client whose proof of the token was wrong. The client words its
 * AuthError from it: under the same close code a silent client hears a different reason.
 */
export const WRONG_TOKEN_REASON = 'authentication failed (wrong job token)';

/** What one handshake message asks of the connection. */
export type HandshakeStep =
  | { kind: 'reply'; reply: Uint8Array }
  /** Both ends proved the token; the server answers first, and learns the client's rank. */
  | { kind: 'done'; reply?: Uint8Array; peerRank?: number }
  /**
   * Close the connection with this close code and reason. wrongProofRank: the rank that a
   * well-formed handshake claimed with a wrong proof of the token (server side).
   */
  | { kind: 'fail'; code: 'malformed' | 'authFailed'; reason: string; wrongProofRank?: number };

interface HandshakeMsg {
  t?: unknown;
  nonce?: unknown;
  rank?: unknown;
  mac?: unknown;
}

export class Handshake {
  private snonce = randomBytes(16);
  private cnonce = randomBytes(16);

  constructor(
    private readonly role: 'server' | 'client',
    private readonly token: string,
    private readonly purpose: Purpose,
    /** For the client: our own rank, sent in the handshake. */
    private readonly myRank: number,
  ) {}

  /** Server side: the challenge, sent as soon as the connection is accepted. */
  hello(): Uint8Array {
    return pack({ t: 'hello', nonce: this.snonce });
  }

  receive(data: Buffer): HandshakeStep {
    if (data.length > PRE_AUTH_MAX_BYTES) return malformed(`${data.length}-byte message before authentication`);
    let m: HandshakeMsg;
    try {
      m = unpack(data) as HandshakeMsg;
    } catch {
      return malformed('undecodable handshake message');
    }
    if (typeof m !== 'object' || m === null) return malformed('handshake message is not an object');
    return this.role === 'server' ? this.serverReceive(m) : this.clientReceive(m);
  }

  /** The client's answer to our challenge: its nonce, its rank and its proof. */
  private serverReceive(m: HandshakeMsg): HandshakeStep {
    if (m.t !== 'auth' || !(m.nonce instanceof Uint8Array) || m.nonce.length !== 16 || !Number.isInteger(m.rank)) {
      return malformed('expected an auth message');
    }
    this.cnonce = Buffer.from(m.nonce);
    const rank = m.rank as number;
    if (!macEqual(m.mac, this.mac('client', rank))) {
      return { kind: 'fail', code: 'authFailed', reason: WRONG_TOKEN_REASON, wrongProofRank: rank };
    }
    return { kind: 'done', reply: pack({ t: 'ok', mac: this.mac('server', rank) }), peerRank: rank };
  }

  /** The server's challenge, then its own proof. */
  private clientReceive(m: HandshakeMsg): HandshakeStep {
    if (m.t === 'hello') {
      if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== 16) return malformed('bad hello');
      this.snonce = Buffer.from(m.nonce);
      const mac = this.mac('client', this.myRank);
      return { kind: 'reply', reply: pack({ t: 'auth', nonce: this.cnonce, rank: this.myRank, mac }) };
    }
    if (m.t === 'ok') {
      if (!macEqual(m.mac, this.mac('server', this.myRank))) {
        return { kind: 'fail', code: 'authFailed', reason: 'the server could not prove the job token' };
      }
      return { kind: 'done' };
    }
    return malformed('unexpected handshake message');
  }

  private mac(side: 'client' | 'server', rank: number): Buffer {
    return createHmac('sha256', this.token)
      .update(`${PROTOCOL}|${this.purpose}|${side}|${rank}|`)
      .update(this.snonce)
      .update(this.cnonce)
      .digest();
  }
}

function malformed(reason: string): HandshakeStep {
  return { kind: 'fail', code: 'malformed', reason };
}

function macEqual(a: unknown, b: Buffer): boolean {
  return a instanceof Uint8Array && a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Why this end gave up on a handshake, as the error the connection's `ready` rejects with:
 * a wrong proof from a client, a failed proof (authFailed), or a peer that does not speak
 * the protocol.
 */
export function handshakeError(
  purpose: Purpose,
  remote: string,
  wrongProofRank: number | null,
  authFailed: boolean,
  reason: string,
): Error {
  const what = `${purpose} connection ${remote}`;
  if (wrongProofRank !== null) {
    const claim = wrongProofRank >= 0 ? `claiming rank ${wrongProofRank}` : 'claiming no rank';
    return new AuthError(`${what}: wrong proof of ZERORING_TOKEN from a client ${claim}`);
  }
  if (authFailed) return new AuthError(`${what}: ${reason}`);
  return new ConfigError(`${what}: ${reason}`);
}

/** Client side: the server closed the handshake with authFailed; `reason` says why. */
export function refusedError(purpose: Purpose, remote: string, reason: string): AuthError {
  const them = `${purpose === 'store' ? 'the rendezvous store' : 'the ring peer'} at ${remote}`;
  if (reason !== WRONG_TOKEN_REASON) {
    return new AuthError(`${them} refused our authentication (${reason || 'no reason given'})`);
  }
  // Which side holds the wrong token is not knowable here, only that the two differ.
  return new AuthError(
    `${them} refused this worker's ZERORING_TOKEN: the tokens differ ` +
      `(expected the same ZERORING_TOKEN on every worker of the job)`,
  );
}
