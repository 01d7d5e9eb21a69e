// The shape of saved model state as ranges of named parameters (state-source.ts has the why and
// the readers): kept apart so that the Strategy contract can name it without importing readers.
import type { ParamSpec } from './model.ts';

export type StateKind = 'param' | 'm' | 'v';

/** A range of one parameter's elements. */
export interface StatePiece {
  name: string;
  offset: number;
  length: number;
}

export interface StateRequest extends StatePiece {
  kind: StateKind;
}

/** Where a loading rank reads model state from, whatever world size and strategy saved it. */
export interface StateSource {
  /** The optimizer's step count. */
  readonly t: number;
  /** The saved model's unique parameters, in order. */
  readonly params: readonly ParamSpec[];
  /** What saved it, for messages. */
  readonly savedBy: { strategy: string; worldSize: number };
  /** The values of each requested range, in request order. */
  read(requests: readonly StateRequest[]): Promise<Float32Array[]>;
  /** Bytes of state read from storage so far (0 for state in memory). */
  readonly bytesRead: number;
}
