// What every part of a ring process group reads: whether it failed (the first error is
// final), whether it was destroyed, and which neighbours left cleanly.
import { describeCall, PeerLostError, type CollectiveCall, type ZeroringError } from '../errors.ts';
import type { Side } from '../transport/ring.ts';

export class GroupState {
  failure: ZeroringError | null = null;
  destroyed = false;
  /** Neighbours that left cleanly (destroy()): why a call that needs them will fail. */
  readonly left: { prev: PeerLostError | null; next: PeerLostError | null } = { prev: null, next: null };

  constructor(readonly rank: number) {}

  /** The PeerLostError for a call that needs a neighbour that left cleanly. */
  lostFor(call: CollectiveCall, side: Side): PeerLostError {
    const gone = this.left[side]!;
    const why =
      side === 'prev' ? "it called destroy() before sending this call's data" : 'it called destroy() before this call';
    return new PeerLostError(gone.rank, describeCall(call), why, this.rank);
  }
}
