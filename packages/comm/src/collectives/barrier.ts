// Barrier as an all-gather of nothing: n-1 ring steps of empty messages. The message a rank
// receives at step s was set off by rank r-1-s when it entered the barrier, so after the last
// step every other rank is known to have entered; no central coordinator is needed.
import { scheduleError, type Collective, type RingPort } from './types.ts';

const EMPTY = new Float32Array(0);

export class Barrier implements Collective {
  expecting: number;

  constructor(private readonly port: RingPort) {
    this.expecting = port.worldSize - 1;
  }

  start(): void {
    this.port.send(0, 0, EMPTY);
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    const n = this.port.worldSize;
    if (!(step >= 0 && step <= n - 2) || chunk !== 0 || data.length !== 0)
      throw scheduleError(`barrier step ${step} chunk ${chunk}`);
    this.expecting--;
    if (step < n - 2) this.port.send(step + 1, 0, EMPTY);
  }
}
