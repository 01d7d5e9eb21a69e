// Workgroup layouts and WGSL snippets for reductions inside one workgroup, shared by the column
// kernels (bias and gain gradients: one workgroup per tile of columns), the cross-entropy's
// mean and the elementwise kernels. Each is a tree in shared memory with a fixed order of
// additions, so results are deterministic from run to run.
//
// Every invocation of the workgroup must call a reduce function the same number of times (they
// hold barriers); callers guard their loads with `if` instead of returning early.

/**
 * At most this many workgroups for an elementwise kernel; each invocation then loops over
 * elements a grid apart. On lavapipe every workgroup has a fixed cost, and one workgroup per 64
 * elements measured slower than a few hundred workgroups covering everything; a GPU is still full.
 */
export const MAX_ELEMENTWISE_GROUPS = 512;

/** Invocations per workgroup of the column reductions. */
export const COLUMN_WORKGROUP = 256;

/** Column-tile width for C columns: the next power of two of C, at most 64. */
export function columnTile(cols: number): number {
  let tc = 1;
  while (tc < cols && tc < 64) tc *= 2;
  return tc;
}

/**
 * `fn <name>Reduce(v, tid) -> T`: the `op`-reduction (sum or max) of v over a workgroup of
 * `size` invocations, returned to all of them. It ends on a barrier, so it can be called again
 * straight away.
 */
export function rowReduceSnippet(name: string, type: 'f32' | 'vec2<f32>', size: number, op: 'sum' | 'max'): string {
  const combine = op === 'sum' ? `${name}[tid] + ${name}[tid + stride]` : `max(${name}[tid], ${name}[tid + stride])`;
  return `
  var<workgroup> ${name} : array<${type}, ${size}>;
  fn ${name}Reduce(v : ${type}, tid : i32) -> ${type} {
    ${name}[tid] = v;
    workgroupBarrier();
    for (var stride = ${size / 2}; stride > 0; stride = stride / 2) {
      if (tid < stride) {
        ${name}[tid] = ${combine};
      }
      workgroupBarrier();
    }
    let total = ${name}[0];
    workgroupBarrier();
    return total;
  }`;
}

/**
 * `fn <name>Reduce(v, tid)`: sums v over the lanes of each column of a COLUMN_WORKGROUP-sized
 * workgroup laid out as lanes x `tile` columns (tid = lane * tile + column), leaving column j's
 * total in <name>[j].
 */
export function laneReduceSnippet(name: string, type: 'f32' | 'vec2<f32>', tile: number): string {
  return `
  var<workgroup> ${name} : array<${type}, ${COLUMN_WORKGROUP}>;
  fn ${name}Reduce(v : ${type}, tid : i32) {
    ${name}[tid] = v;
    workgroupBarrier();
    for (var stride = ${COLUMN_WORKGROUP / tile / 2}; stride > 0; stride = stride / 2) {
      if (tid / ${tile} < stride) {
        ${name}[tid] = ${name}[tid] + ${name}[tid + stride * ${tile}];
      }
      workgroupBarrier();
    }
  }`;
}
