// The node layout every rank derives from the records published at the rendezvous, and the
// verdict on the hierarchical all-reduce: automatic where the layout allows it, refused with a
// ConfigError naming the layout where ZERORING_HIERARCHICAL=1 cannot be honoured.
import { describe, expect, it } from 'vitest';
import type { HierarchicalSetting } from '../src/env.ts';
import { ConfigError } from '../src/errors.ts';
import { describeLayout, planLayout, type NodeRecord } from '../src/group/node-layout.ts';

/** Records for ranks placed on the named nodes, in rank order. */
const records = (nodes: string[], hier: HierarchicalSetting = 'auto'): NodeRecord[] =>
  nodes.map((node) => ({ node, hier }));

describe('planLayout', () => {
  it('2 nodes x 2 ranks: hierarchical, nodes in the order of their lowest rank', () => {
    const l = planLayout(records(['node 1', 'node 1', 'node 0', 'node 0']));
    expect(l).toEqual({
      nodes: [
        [0, 1],
        [2, 3],
      ],
      nodeOf: [0, 0, 1, 1],
      hierarchical: true,
      flatBecause: null,
    });
  });

  it('ranks of a node need not be consecutive', () => {
    const l = planLayout(records(['a', 'b', 'c', 'a', 'b', 'c']));
    expect(l.nodes).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
    expect(l.hierarchical).toBe(true);
  });

  it.each([
    [['a', 'a', 'a'], 'one node (1 node of 3 ranks)'],
    [['a', 'b', 'c'], 'one rank per node (3 nodes of 1 rank)'],
    [['a', 'b', 'b', 'b'], 'irregular layout (2 nodes of 1, 3 ranks)'],
  ])('%j: the flat ring, and why', (nodes, why) => {
    expect(planLayout(records(nodes))).toMatchObject({ hierarchical: false, flatBecause: why });
  });

  it('ZERORING_HIERARCHICAL=0 keeps the flat ring on a layout that allows the hierarchy', () => {
    const l = planLayout(records(['a', 'a', 'b', 'b'], 'off'));
    expect(l).toMatchObject({ hierarchical: false, flatBecause: 'ZERORING_HIERARCHICAL=0' });
    expect(planLayout(records(['a', 'a', 'b', 'b'], 'on')).hierarchical).toBe(true);
  });

  it.each([
    [['a', 'b', 'b', 'b'], '2 nodes of 1, 3 ranks'],
    [['a', 'a'], '1 node of 2 ranks'],
    [['a', 'b'], '2 nodes of 1 rank'],
  ])('ZERORING_HIERARCHICAL=1 on %j: ConfigError naming the layout', (nodes, layout) => {
    const plan = () => planLayout(records(nodes, 'on'));
    expect(plan).toThrow(ConfigError);
    expect(plan).toThrow(
      `ZERORING_HIERARCHICAL=1, but the layout is ${layout}, expected 2 or more nodes with the same number ` +
        '(2 or more) of ranks each',
    );
  });

  it('a setting that differs between ranks is a ConfigError naming both', () => {
    const rs = records(['a', 'a', 'b', 'b']);
    rs[2] = { node: 'b', hier: 'off' };
    expect(() => planLayout(rs)).toThrow('ZERORING_HIERARCHICAL is unset on rank 0 but 0 on rank 2');
  });

  it('describes layouts the way errors name them', () => {
    expect(describeLayout([[0, 1, 2, 3, 4, 5, 6, 7]])).toBe('1 node of 8 ranks');
    expect(describeLayout([[0], [1], [2, 3]])).toBe('3 nodes of 1, 1, 2 ranks');
  });
});
