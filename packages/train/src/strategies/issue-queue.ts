// IssueQueue: collectives issued in program order even when their inputs become ready out of order.
//
// Every rank must call collectives in the same order (DESIGN.md). A ZeRO strategy issues them
// from several places — reduce-scatters from onBlockGrads once a gradient read-back resolves,
// all-gathers from acquire() for the next block — and a read-back's resolution time differs
// between ranks, so issuing "when the input is ready" could interleave differently on two ranks
// and pair one rank's all-gather with another's reduce-scatter. The queue fixes the order at the
// moment of the call (synchronous program order, identical on every rank): item k is handed to
// the process group only after item k-1 was, while the process group itself runs them in issue
// order without waiting for completion (so they still overlap with compute).

export class IssueQueue {
  private tail: Promise<void> = Promise.resolve();

  /**
   * Issue `collective(input)` after every earlier item was issued and `input` resolved. The
   * result resolves to the input once the collective completed, and rejects with its error.
   * A rejection never counts as unhandled here: the caller awaits it where it needs the result.
   */
  issue<T>(input: T | Promise<T>, collective: (x: T) => Promise<unknown>): Promise<T> {
    const issued = this.tail.then(() => input).then((x) => ({ x, done: collective(x) }));
    this.tail = issued.then(
      () => undefined,
      () => undefined,
    );
    const result = issued.then(async ({ x, done }) => {
      await done;
      return x;
    });
    result.catch(() => undefined);
    return result;
  }

  /** Resolves once everything issued so far has been handed to the process group. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
