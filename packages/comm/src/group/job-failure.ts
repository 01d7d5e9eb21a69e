// The one failure of a job, shared by everything a process communicates through: the world
// ring, each subgroup's ring and the point-to-point links. Whichever of them fails first fails
// all the others with the same error, and each passes it on over its own links, so a peer lost
// in a subgroup (or a send whose recv disagrees) reaches every rank of the job, not only the
// ranks that share that subgroup or link.
import type { ZeroringError } from '../errors.ts';

export class JobFailure {
  private first: ZeroringError | null = null;
  private readonly members = new Set<(e: ZeroringError) => void>();

  get error(): ZeroringError | null {
    return this.first;
  }

  /** `abort` is called once with the job's failure; returns the function that leaves (at destroy()). */
  join(abort: (e: ZeroringError) => void): () => void {
    this.members.add(abort);
    return () => this.members.delete(abort);
  }

  /** The first call wins; every member aborts with it (a member calling back in is a no-op). */
  fail(e: ZeroringError): void {
    if (this.first) return;
    this.first = e;
    for (const abort of [...this.members]) abort(e);
  }
}
