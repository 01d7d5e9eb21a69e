// What `zeroring train --nproc 2` (the quick start) shows on a terminal: the workers' log lines
// pretty-printed like the launcher's own (not JSON), and none of Dawn's adapter warnings when the
// backend chosen is wasm. A real pseudo-terminal from util-linux's `script`, as a user's shell has.
import { describe, expect, it } from 'vitest';
import { runCli } from './fixtures/cli.ts';

/** Runs the command in a pseudo-terminal, with no ZERORING_LOG_FORMAT: the CLI chooses (pretty on a TTY). */
const onTerminal = (args: string[]) => runCli(args, { terminal: true, env: { ZERORING_LOG_FORMAT: undefined } });

describe('zeroring train on a terminal', () => {
  it("prints the workers' logs pretty and no Dawn warnings", async () => {
    const r = await onTerminal(
      'train --nproc 2 --steps 2 --batch-size 4 --eval-batches 1 --sample-tokens 10'.split(' '),
    );
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/^\[rank 0\] \[\d\d:\d\d:\d\d\.\d{3}\] INFO: tfjs backend: wasm/m);
    expect(r.output).toMatch(/^\[rank 0\] \[\d\d:\d\d:\d\d\.\d{3}\] INFO: done: 2 steps/m);
    expect(r.output).not.toMatch(/\{"level":/);
    expect(r.output).not.toMatch(/artificially reduced/);
  });
});
