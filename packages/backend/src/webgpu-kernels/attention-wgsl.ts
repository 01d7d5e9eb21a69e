// WGSL sources of the FlashAttention programs in attention.ts: forward, backward for dQ (with the
// row statistics), backward for dK and dV. Every program gives one invocation to one row (a query
// row, or a key row) and keeps that row's vectors and accumulators in private memory, while the
// workgroup streams tiles of the other side through workgroup memory. One row per invocation keeps
// the softmax statistics in registers with no reduction across invocations, and every invocation
// of a workgroup reads the same tile element at the same time (a broadcast, on GPUs and on
// lavapipe alike). Loops stop at the causal diagonal. Loop bounds that depend on the workgroup go
// through workgroupUniformLoad, because WGSL wants barriers in uniform control flow and tfjs hands
// us workgroupId as a private variable, which the uniformity analysis cannot see through.

/** Compile-time sizes of one program variant. */
export interface AttentionTiles {
  /** Head size; a multiple of 4 (rows are read as vec4). */
  hs: number;
  /** Rows per workgroup, one per invocation. */
  rows: number;
  /** Rows per tile streamed through workgroup memory. */
  tile: number;
}

function constants({ hs, rows, tile }: AttentionTiles): string {
  return `
const HS4 = ${hs / 4};
const R = ${rows};
const N = ${tile};
const SCALE = f32(${1 / Math.sqrt(hs)});
`;
}

/** Reads a head's hs values from row `at` of a vec4 array into a private array, times `mul`. */
function loadRow(dst: string, src: string, at: string, mul = ''): string {
  return `for (var d = 0; d < HS4; d++) { ${dst}[d] = ${src}[${at} + d]${mul}; }`;
}

/**
 * Loads keys and values j0 .. j0 + N - 1 of the workgroup's head into kTile and vTile, every
 * invocation a share, between barriers (the previous tile's readers are done before it is
 * overwritten).
 */
function loadKeyValueTile(): string {
  return `workgroupBarrier();
    for (var e = t; e < N * HS4; e += R) {
      let j = j0 + e / HS4;
      if (j < T) {
        let at = (seq + j) * stride + e % HS4;
        kTile[e] = X[at + kOff];
        vTile[e] = X[at + vOff];
      }
    }
    workgroupBarrier();`;
}

/**
 * Forward. Workgroup (query tile, head, batch); X = qkv [B*T, 3C] as vec4; result = y [B*T, C] as
 * vec4. Online softmax: per key tile the running max m and sum l are updated once, the output
 * accumulator rescaled once, and y = o / l at the end. The log-sum-exp is not written: the dQ
 * program recomputes it at no extra cost (see attention.ts).
 */
export function forwardSource(tiles: AttentionTiles): string {
  return `${constants(tiles)}
var<workgroup> kTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> vTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> tileCount : i32;

fn main(index : i32) {
  let T = uniforms.T;
  let H = uniforms.H;
  let t = i32(localId.x);
  let row0 = i32(workgroupId.x) * R;
  let h = i32(workgroupId.y);
  let seq = i32(workgroupId.z) * T;
  let i = row0 + t;
  let stride = 3 * H * HS4;
  let kOff = (H + h) * HS4;
  let vOff = (2 * H + h) * HS4;
  if (t == 0) { tileCount = (min(row0 + R, T) - 1) / N + 1; }
  let tiles = workgroupUniformLoad(&tileCount);

  var q : array<vec4<f32>, HS4>;
  var o : array<vec4<f32>, HS4>;
  var s : array<f32, N>;
  if (i < T) { ${loadRow('q', 'X', '(seq + i) * stride + h * HS4', ' * SCALE')} }
  var m = -3.0e38;
  var l = 0.0;
  for (var kt = 0; kt < tiles; kt++) {
    let j0 = kt * N;
    ${loadKeyValueTile()}
    // Keys j0 .. j0 + n - 1 lie at or before row i.
    let n = min(N, i - j0 + 1);
    if (i < T && n > 0) {
      var mNew = m;
      for (var c = 0; c < n; c++) {
        var acc = vec4<f32>(0.0);
        for (var d = 0; d < HS4; d++) { acc += q[d] * kTile[c * HS4 + d]; }
        s[c] = acc.x + acc.y + acc.z + acc.w;
        mNew = max(mNew, s[c]);
      }
      let corr = exp(m - mNew);
      l *= corr;
      for (var d = 0; d < HS4; d++) { o[d] *= corr; }
      for (var c = 0; c < n; c++) {
        let p = exp(s[c] - mNew);
        l += p;
        for (var d = 0; d < HS4; d++) { o[d] += p * vTile[c * HS4 + d]; }
      }
      m = mNew;
    }
  }
  if (i < T) {
    let inv = 1.0 / l;
    let at = (seq + i) * H * HS4 + h * HS4;
    for (var d = 0; d < HS4; d++) { result[at + d] = o[d] * inv; }
  }
}
`;
}

/**
 * Backward, query side. Workgroup (query tile, head, batch); X = qkv, Y = y, G = dy (vec4);
 * result (f32) = [dq as [B*T, C] | lse [B, H, T] | D [B, H, T]], lse and D at uniforms.lseAt and
 * uniforms.dAt. D = rowsum(dy * y) comes from the row this invocation holds anyway. The scores
 * are recomputed with the running max and sum of the forward, so lse falls out of the same pass,
 * and dq = scale * sum_j p_ij (dp_ij - D_i) k_j is accumulated unnormalised and rescaled whenever
 * the max moves, exactly as the forward accumulates y.
 */
export function queryGradSource(tiles: AttentionTiles): string {
  return `${constants(tiles)}
var<workgroup> kTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> vTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> tileCount : i32;

fn main(index : i32) {
  let T = uniforms.T;
  let H = uniforms.H;
  let t = i32(localId.x);
  let row0 = i32(workgroupId.x) * R;
  let h = i32(workgroupId.y);
  let b = i32(workgroupId.z);
  let seq = b * T;
  let i = row0 + t;
  let stride = 3 * H * HS4;
  let kOff = (H + h) * HS4;
  let vOff = (2 * H + h) * HS4;
  if (t == 0) { tileCount = (min(row0 + R, T) - 1) / N + 1; }
  let tiles = workgroupUniformLoad(&tileCount);

  var q : array<vec4<f32>, HS4>;
  var g : array<vec4<f32>, HS4>;
  var dq : array<vec4<f32>, HS4>;
  var s : array<f32, N>;
  var dp : array<f32, N>;
  var rowD = 0.0;
  if (i < T) {
    ${loadRow('q', 'X', '(seq + i) * stride + h * HS4', ' * SCALE')}
    let at = (seq + i) * H * HS4 + h * HS4;
    var acc = vec4<f32>(0.0);
    for (var d = 0; d < HS4; d++) {
      g[d] = G[at + d];
      acc += g[d] * Y[at + d];
    }
    rowD = acc.x + acc.y + acc.z + acc.w;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var kt = 0; kt < tiles; kt++) {
    let j0 = kt * N;
    ${loadKeyValueTile()}
    let n = min(N, i - j0 + 1);
    if (i < T && n > 0) {
      var mNew = m;
      for (var c = 0; c < n; c++) {
        var sk = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        for (var d = 0; d < HS4; d++) {
          sk += q[d] * kTile[c * HS4 + d];
          gv += g[d] * vTile[c * HS4 + d];
        }
        s[c] = sk.x + sk.y + sk.z + sk.w;
        dp[c] = gv.x + gv.y + gv.z + gv.w;
        mNew = max(mNew, s[c]);
      }
      let corr = exp(m - mNew);
      l *= corr;
      for (var d = 0; d < HS4; d++) { dq[d] *= corr; }
      for (var c = 0; c < n; c++) {
        let p = exp(s[c] - mNew);
        l += p;
        let w = p * (dp[c] - rowD);
        for (var d = 0; d < HS4; d++) { dq[d] += w * kTile[c * HS4 + d]; }
      }
      m = mNew;
    }
  }
  if (i < T) {
    let k = SCALE / l;
    let at = ((seq + i) * H * HS4 + h * HS4) * 4;
    for (var d = 0; d < HS4; d++) {
      let v = dq[d] * k;
      result[at + 4 * d] = v.x;
      result[at + 4 * d + 1] = v.y;
      result[at + 4 * d + 2] = v.z;
      result[at + 4 * d + 3] = v.w;
    }
    let r = (b * H + h) * T + i;
    result[uniforms.lseAt + r] = m + log(l);
    result[uniforms.dAt + r] = rowD;
  }
}
`;
}

/**
 * Backward, key side. Workgroup (key tile, head, batch); X = qkv, P = the query-side result (dq,
 * lse, D) as f32, G = dy; result = dqkv [B*T, 3C] as vec4. Query tiles run from the diagonal to
 * the end. With p_ij = exp(s_ij - lse_i) recomputed from the saved lse:
 *   dv_j = sum_i p_ij dy_i,   dk_j = scale * sum_i p_ij (dy_i . v_j - D_i) q_i.
 * Each workgroup also copies the dq of its own rows and head, so dqkv needs no concat.
 */
export function keyGradSource(tiles: AttentionTiles): string {
  return `${constants(tiles)}
var<workgroup> qTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> gTile : array<vec4<f32>, ${tiles.tile * (tiles.hs / 4)}>;
var<workgroup> lseTile : array<f32, N>;
var<workgroup> dTile : array<f32, N>;
var<workgroup> firstTile : i32;

fn main(index : i32) {
  let T = uniforms.T;
  let H = uniforms.H;
  let t = i32(localId.x);
  let row0 = i32(workgroupId.x) * R;
  let h = i32(workgroupId.y);
  let b = i32(workgroupId.z);
  let seq = b * T;
  let j = row0 + t;
  let stride = 3 * H * HS4;
  let kOff = (H + h) * HS4;
  let vOff = (2 * H + h) * HS4;
  let stats = (b * H + h) * T;
  if (t == 0) { firstTile = row0 / N; }
  let first = workgroupUniformLoad(&firstTile);
  let tiles = (T - 1) / N + 1;

  var k : array<vec4<f32>, HS4>;
  var v : array<vec4<f32>, HS4>;
  var dk : array<vec4<f32>, HS4>;
  var dv : array<vec4<f32>, HS4>;
  if (j < T) {
    ${loadRow('k', 'X', '(seq + j) * stride + kOff')}
    ${loadRow('v', 'X', '(seq + j) * stride + vOff')}
  }
  for (var qt = first; qt < tiles; qt++) {
    let i0 = qt * N;
    workgroupBarrier();
    for (var e = t; e < N * HS4; e += R) {
      let i = i0 + e / HS4;
      if (i < T) {
        let d = e % HS4;
        qTile[e] = X[(seq + i) * stride + h * HS4 + d] * SCALE;
        gTile[e] = G[(seq + i) * H * HS4 + h * HS4 + d];
      }
    }
    for (var c = t; c < N; c += R) {
      if (i0 + c < T) {
        lseTile[c] = P[uniforms.lseAt + stats + i0 + c];
        dTile[c] = P[uniforms.dAt + stats + i0 + c];
      }
    }
    workgroupBarrier();
    // Queries i0 + c with j <= i0 + c < T.
    let cEnd = min(N, T - i0);
    if (j < T) {
      for (var c = max(0, j - i0); c < cEnd; c++) {
        var sk = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        for (var d = 0; d < HS4; d++) {
          sk += qTile[c * HS4 + d] * k[d];
          gv += gTile[c * HS4 + d] * v[d];
        }
        let p = exp(sk.x + sk.y + sk.z + sk.w - lseTile[c]);
        let w = p * (gv.x + gv.y + gv.z + gv.w - dTile[c]);
        for (var d = 0; d < HS4; d++) {
          dv[d] += p * gTile[c * HS4 + d];
          dk[d] += w * qTile[c * HS4 + d];
        }
      }
    }
  }
  if (j < T) {
    let at = (seq + j) * stride;
    let dqAt = ((seq + j) * H * HS4 + h * HS4) * 4;
    for (var d = 0; d < HS4; d++) {
      let x = dqAt + 4 * d;
      result[at + h * HS4 + d] = vec4<f32>(P[x], P[x + 1], P[x + 2], P[x + 3]);
      result[at + kOff + d] = dk[d];
      result[at + vOff + d] = dv[d];
    }
  }
}
`;
}
