// The node flags `zeroring launch` and `zeroring train` share: `--nnodes M` or `MIN:MAX` (an
// elastic job, torchrun's syntax) and the elastic rendezvous's window and timeout, parsed once
// here so that both commands read and explain them alike.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ConfigError, parseNnodes, type LaunchOptions, type NodeRange } from '@zeroring/comm';

export interface RendezvousFlags {
  nnodes: number | NodeRange;
  nodeRank?: number;
  rdzvWindow?: number;
  rdzvTimeout?: number;
}

function nnodesArg(value: string): number | NodeRange {
  try {
    return parseNnodes(value);
  } catch (e) {
    if (e instanceof ConfigError) throw new InvalidArgumentError(`--${e.message}`);
    throw e;
  }
}

function seconds(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
      throw new InvalidArgumentError(`${name} '${value}' is not a number of seconds >= 0`);
    }
    return n;
  };
}

/** --nnodes, --rdzv-window, --rdzv-timeout. */
export function addRendezvousOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--nnodes <m>',
        'nodes in the job: M, or MIN:MAX for an elastic job that re-forms when a node leaves or joins',
      )
        .argParser(nnodesArg)
        .default(1),
    )
    .option(
      '--rdzv-window <s>',
      'elastic: seconds a round waits for more nodes once MIN have joined (default 5)',
      seconds('--rdzv-window'),
    )
    .option(
      '--rdzv-timeout <s>',
      'elastic: seconds a round waits for MIN nodes before the job fails (default 600)',
      seconds('--rdzv-timeout'),
    );
}

/** The launch() options these flags set. */
export function rendezvousOptions(
  f: RendezvousFlags,
): Pick<LaunchOptions, 'nnodes' | 'rdzvWindowMs' | 'rdzvTimeoutMs'> {
  const ms = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
  return { nnodes: f.nnodes, rdzvWindowMs: ms(f.rdzvWindow), rdzvTimeoutMs: ms(f.rdzvTimeout) };
}
