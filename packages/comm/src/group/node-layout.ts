// Which node each rank runs on, and whether the world's all-reduce goes hierarchical. Every rank
// publishes its node's name and its ZERORING_HIERARCHICAL setting in the rendezvous store; every
// rank reads all of them and so reaches the same verdict. A node is named by the launcher's node
// rank (GROUP_RANK, which also tells apart nodes emulated on one machine), else by the hostname.
// Details: docs/internals.md#hierarchical-all-reduce
import type { HierarchicalSetting } from '../env.ts';
import { ConfigError } from '../errors.ts';

/** What each rank publishes about itself. */
export interface NodeRecord {
  node: string;
  hier: HierarchicalSetting;
}

export interface NodeLayout {
  /** The ranks of each node, in rank order; nodes in the order of their lowest rank. */
  nodes: number[][];
  /** Node index of each rank. */
  nodeOf: number[];
  /** Whether the world's all-reduce runs hierarchically. */
  hierarchical: boolean;
  /** Why not, when not (for the debug log). */
  flatBecause: string | null;
}

/** "2 nodes of 2 ranks", "2 nodes of 1, 3 ranks": the layout as error messages name it. */
export function describeLayout(nodes: number[][]): string {
  const sizes = nodes.map((n) => n.length);
  const regular = sizes.every((s) => s === sizes[0]);
  const of = regular ? String(sizes[0]) : sizes.join(', ');
  const ranks = regular && sizes[0] === 1 ? 'rank' : 'ranks';
  return `${nodes.length} node${nodes.length === 1 ? '' : 's'} of ${of} ${ranks}`;
}

const SHOWN: Record<HierarchicalSetting, string> = { auto: 'unset', on: '1', off: '0' };

/**
 * The layout from every rank's record (index = rank), and the verdict: hierarchical where there
 * are 2 or more nodes with the same number (2 or more) of ranks each, unless turned off; forced
 * on with any other layout, or set differently on different ranks, it is a ConfigError.
 */
export function planLayout(records: readonly NodeRecord[]): NodeLayout {
  const setting = records[0]!.hier;
  const other = records.findIndex((r) => r.hier !== setting);
  if (other >= 0) {
    throw new ConfigError(
      `ZERORING_HIERARCHICAL is ${SHOWN[setting]} on rank 0 but ${SHOWN[records[other]!.hier]} on rank ${other}, ` +
        'expected the same value on every rank',
    );
  }
  const index = new Map<string, number>();
  const nodes: number[][] = [];
  const nodeOf = records.map((r, rank) => {
    let i = index.get(r.node);
    if (i === undefined) index.set(r.node, (i = nodes.push([]) - 1));
    nodes[i]!.push(rank);
    return i;
  });
  const layout = describeLayout(nodes);
  const sizes = nodes.map((n) => n.length);
  let why: string | null = null;
  if (nodes.length < 2) why = `one node (${layout})`;
  else if (!sizes.every((s) => s === sizes[0])) why = `irregular layout (${layout})`;
  else if (sizes[0] === 1) why = `one rank per node (${layout})`;
  if (why && setting === 'on') {
    throw new ConfigError(
      `ZERORING_HIERARCHICAL=1, but the layout is ${layout}, expected 2 or more nodes with the same ` +
        'number (2 or more) of ranks each',
    );
  }
  if (!why && setting === 'off') why = 'ZERORING_HIERARCHICAL=0';
  return { nodes, nodeOf, hierarchical: why === null, flatBecause: why };
}
