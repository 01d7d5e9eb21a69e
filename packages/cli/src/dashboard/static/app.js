// zeroring dashboard page. Plain browser JS, no build step: uPlot (served from node_modules by
// server.ts) draws the time series; per-rank bars are plain HTML because stacked bars per rank
// are clearer as boxes than as a chart. The pipeline timeline (runs with --pp) is a Gantt chart,
// which uPlot does not do: it is painted on its own canvas, one lane per stage.
//
// Data: the WebSocket at /ws sends JSON arrays of TrainEvents (packages/train/src/events.ts).
// The first message after each (re)connect is the whole history, so state is rebuilt from it;
// until it has arrived the badge says "loading", since the fields do not show the run yet.
// Redraws are throttled: events can arrive faster than it is useful to paint.
// For tests and curious users, window.zeroringDashboard exposes what each chart holds, and the
// uPlot instances themselves.
'use strict';

const CATEGORIES = ['params', 'grads', 'optimizer', 'gathered', 'activations'];
const COLORS = {
  loss: '#4e79a7',
  val: '#e15759',
  tps: '#59a14f',
  compute: '#4e79a7',
  comm: '#e15759',
  optim: '#f28e2b',
  params: '#4e79a7',
  grads: '#f28e2b',
  optimizer: '#e15759',
  gathered: '#76b7b2',
  activations: '#59a14f',
  forward: '#4e79a7',
  backward: '#f28e2b',
  idle: '#eef1f4',
};
const RANK_WINDOW = 20; // steps averaged for the per-rank time split

const $ = (id) => document.getElementById(id);

function emptyState() {
  return {
    config: null,
    steps: [], // step events in arrival order
    val: new Map(), // step -> valLoss
    sample: null,
    done: null,
    events: 0,
  };
}
let state = emptyState();

// ---- formatting -------------------------------------------------------------------------------

function fmtBytes(b) {
  if (!Number.isFinite(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < units.length - 1) {
    b /= 1024;
    i++;
  }
  return `${b.toFixed(i === 0 ? 0 : b < 10 ? 2 : 1)} ${units[i]}`;
}
function fmtNum(x, digits = 4) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '–';
  if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(2) + 'M';
  if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + 'k';
  return Number(x.toPrecision(digits)).toString();
}

// ---- events -----------------------------------------------------------------------------------

function apply(ev) {
  state.events++;
  switch (ev.type) {
    case 'config':
      state.config = ev;
      break;
    case 'step': {
      // A run restarted by --max-restarts resumes from its last checkpoint and repeats the steps
      // after it: the repeated steps replace the old ones, so every chart's x stays increasing.
      while (state.steps.length > 0 && state.steps[state.steps.length - 1].step >= ev.step) state.steps.pop();
      state.steps.push(ev);
      break;
    }
    case 'val':
      state.val.set(ev.step, ev.valLoss);
      break;
    case 'sample':
      state.sample = ev;
      break;
    case 'done':
      state.done = ev;
      break;
  }
}

// ---- uPlot charts -----------------------------------------------------------------------------

const charts = {};

function makeChart(id, series, opts = {}) {
  const el = $(id);
  const width = Math.max(300, el.clientWidth || 480);
  const plot = new uPlot(
    {
      width,
      height: 240,
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, ...(opts.scales || {}) },
      axes: [{ label: 'step' }, { label: opts.yLabel || '', size: 60 }],
      series: [{ label: 'step', value: legendValue(String) }, ...series],
      legend: { live: true },
    },
    [[], ...series.map(() => [])],
    el,
  );
  charts[id] = plot;
  return plot;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

/**
 * Legend text of a series: the hovered step's value, and with nothing hovered (uPlot passes no
 * index then, and would print "--") the series' latest value, which is what a watcher wants.
 */
function legendValue(fmt) {
  return (u, value, seriesIdx, idx) => {
    const v = idx === null || idx === undefined ? lastValue(u.data[seriesIdx]) : value;
    return v === null || v === undefined ? '–' : fmt(v);
  };
}

function line(label, color, fmt, extra = {}) {
  const value = legendValue(fmt);
  return { label, stroke: color, width: 1.5, spanGaps: true, points: { show: false }, value, ...extra };
}

function setupCharts() {
  const ms = (v) => v.toFixed(v >= 100 ? 0 : 1);
  makeChart(
    'chart-loss',
    [
      line('train', COLORS.loss, fmtNum),
      // Validation runs every eval-interval steps, and the train series has a point at every step in
      // between where val has none. Joining val points across those gaps (spanGaps) would draw
      // straight lines through steps never evaluated, cutting across the train curve; so val is
      // drawn as dots, joined only where evaluations are on adjacent steps.
      line('val', COLORS.val, fmtNum, { width: 2, spanGaps: false, points: { show: true, size: 7, fill: COLORS.val } }),
    ],
    { yLabel: 'loss' },
  );
  makeChart('chart-tps', [line('tokens/s', COLORS.tps, (v) => fmtNum(v, 3))], { yLabel: 'tokens/s' });
  makeChart(
    'chart-time',
    [line('compute', COLORS.compute, ms), line('comm wait', COLORS.comm, ms), line('optimizer', COLORS.optim, ms)],
    { yLabel: 'ms' },
  );
  const ro = new ResizeObserver(() => {
    for (const [id, plot] of Object.entries(charts)) {
      const w = $(id).clientWidth;
      if (w > 0 && Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: 240 });
    }
  });
  for (const id of Object.keys(charts)) ro.observe($(id));
  // The pipeline canvas is sized in pixels: repaint it at the card's new width.
  let pipeWidth = 0;
  new ResizeObserver(() => {
    const w = $('pipeline-chart').clientWidth;
    if (w > 0 && Math.abs(w - pipeWidth) > 4 && lastPipeline()) {
      pipeWidth = w;
      window.zeroringDashboard.pipeline = drawPipeline();
    }
  }).observe($('pipeline-chart'));
}

function countPoints(arr) {
  let n = 0;
  for (const v of arr) if (v !== null && v !== undefined && Number.isFinite(v)) n++;
  return n;
}

function drawCharts() {
  // Loss: train points at every step, val at its own (sparser) steps; join on the step number.
  const byStep = new Map();
  for (const s of state.steps) byStep.set(s.step, { loss: s.loss, val: null });
  for (const [step, v] of state.val) {
    const row = byStep.get(step) || { loss: null, val: null };
    row.val = v;
    byStep.set(step, row);
  }
  const xs = [...byStep.keys()].sort((a, b) => a - b);
  const lossData = [xs, xs.map((x) => byStep.get(x).loss), xs.map((x) => byStep.get(x).val)];
  charts['chart-loss'].setData(lossData);

  const sx = state.steps.map((s) => s.step);
  charts['chart-tps'].setData([sx, state.steps.map((s) => s.tokensPerSec)]);
  charts['chart-time'].setData([
    sx,
    state.steps.map((s) => s.computeMs),
    state.steps.map((s) => s.commMs),
    state.steps.map((s) => s.optimMs),
  ]);

  const counts = {
    loss: countPoints(lossData[1]),
    valLoss: countPoints(lossData[2]),
    tokensPerSec: countPoints(state.steps.map((s) => s.tokensPerSec)),
    time: countPoints(state.steps.map((s) => s.computeMs)),
  };
  $('chart-loss').dataset.points = String(counts.loss + counts.valLoss);
  $('chart-tps').dataset.points = String(counts.tokensPerSec);
  $('chart-time').dataset.points = String(counts.time);
  return counts;
}

// ---- per-rank bars ----------------------------------------------------------------------------

/** The per-rank entries of a step; a single-process step is rank 0 with the step's own numbers. */
function ranksOf(step) {
  if (Array.isArray(step.ranks) && step.ranks.length > 0) return step.ranks;
  return [{ rank: 0, computeMs: step.computeMs, commMs: step.commMs, optimMs: step.optimMs, memory: step.memory }];
}

function barRow(label, segments, scale, valueText) {
  const row = document.createElement('div');
  row.className = 'bar-row';
  const l = document.createElement('span');
  l.className = 'label';
  l.textContent = label;
  const bar = document.createElement('div');
  bar.className = 'bar';
  for (const seg of segments) {
    if (!(seg.value > 0)) continue;
    const s = document.createElement('span');
    s.style.width = `${(100 * seg.value) / scale}%`;
    s.style.backgroundColor = seg.color;
    if (seg.host) s.className = 'host';
    s.title = seg.title;
    bar.appendChild(s);
  }
  const v = document.createElement('span');
  v.className = 'value';
  v.textContent = valueText;
  row.append(l, bar, v);
  return row;
}

function legend(el, items) {
  el.replaceChildren(
    ...items.map(([name, color]) => {
      const span = document.createElement('span');
      const i = document.createElement('i');
      i.style.background = color;
      span.append(i, name);
      return span;
    }),
  );
}

function drawRankTime() {
  const el = $('ranks-time');
  const recent = state.steps.slice(-RANK_WINDOW);
  const sums = new Map(); // rank -> {compute, comm, optim, n}
  for (const step of recent) {
    for (const r of ranksOf(step)) {
      const acc = sums.get(r.rank) || { compute: 0, comm: 0, optim: 0, n: 0 };
      acc.compute += r.computeMs || 0;
      acc.comm += r.commMs || 0;
      acc.optim += r.optimMs || 0;
      acc.n++;
      sums.set(r.rank, acc);
    }
  }
  const ranks = [...sums.keys()].sort((a, b) => a - b);
  const rows = ranks.map((rank) => {
    const a = sums.get(rank);
    return { rank, compute: a.compute / a.n, comm: a.comm / a.n, optim: a.optim / a.n };
  });
  const scale = Math.max(1e-9, ...rows.map((r) => r.compute + r.comm + r.optim));
  if (rows.length === 0)
    el.replaceChildren(
      Object.assign(document.createElement('div'), { className: 'empty', textContent: 'waiting for steps' }),
    );
  else
    el.replaceChildren(
      ...rows.map((r) =>
        barRow(
          `rank ${r.rank}`,
          [
            { value: r.compute, color: COLORS.compute, title: `compute ${r.compute.toFixed(1)} ms` },
            { value: r.comm, color: COLORS.comm, title: `comm wait ${r.comm.toFixed(1)} ms` },
            { value: r.optim, color: COLORS.optim, title: `optimizer ${r.optim.toFixed(1)} ms` },
          ],
          scale,
          `${r.compute.toFixed(0)} / ${r.comm.toFixed(0)} / ${r.optim.toFixed(0)} ms`,
        ),
      ),
    );
  el.dataset.ranks = String(rows.length);
  $('ranks-time-window').textContent = recent.length
    ? `mean of last ${recent.length} steps, ms`
    : 'mean of recent steps';
  legend($('legend-time'), [
    ['compute', COLORS.compute],
    ['comm wait', COLORS.comm],
    ['optimizer', COLORS.optim],
  ]);
  return rows.length;
}

function drawRankMemory() {
  const el = $('ranks-memory');
  const last = state.steps[state.steps.length - 1];
  const ranks = last
    ? ranksOf(last)
        .slice()
        .sort((a, b) => a.rank - b.rank)
    : [];
  const totals = ranks.map((r) => {
    let device = 0,
      host = 0;
    for (const c of CATEGORIES) {
      const m = r.memory && r.memory[c];
      if (m) {
        device += m.device || 0;
        host += m.host || 0;
      }
    }
    return { device, host };
  });
  const scale = Math.max(1, ...totals.map((t) => t.device + t.host));
  if (ranks.length === 0)
    el.replaceChildren(
      Object.assign(document.createElement('div'), { className: 'empty', textContent: 'waiting for steps' }),
    );
  else
    el.replaceChildren(
      ...ranks.map((r, i) => {
        const segments = [];
        for (const c of CATEGORIES) {
          const m = r.memory && r.memory[c];
          if (!m) continue;
          segments.push({ value: m.device, color: COLORS[c], title: `${c} on device: ${fmtBytes(m.device)}` });
          segments.push({ value: m.host, color: COLORS[c], host: true, title: `${c} on host: ${fmtBytes(m.host)}` });
        }
        return barRow(
          `rank ${r.rank}`,
          segments,
          scale,
          `${fmtBytes(totals[i].device)} dev · ${fmtBytes(totals[i].host)} host`,
        );
      }),
    );
  el.dataset.ranks = String(ranks.length);
  legend(
    $('legend-memory'),
    CATEGORIES.map((c) => [c, COLORS[c]]),
  );
  return ranks.length;
}

// ---- pipeline timeline ------------------------------------------------------------------------

const PIPE = { laneH: 28, boxPad: 3, left: 64, right: 14, top: 6, bottom: 32 };

/** The pipeline figures of the latest step, or null (no pipeline, or a step without them). */
function lastPipeline() {
  const last = state.steps[state.steps.length - 1];
  const p = last && last.pipeline;
  if (!p || !Array.isArray(p.timeline) || !Array.isArray(p.stages)) return null;
  return { step: last.step, figures: p };
}

/** A round step between axis ticks: 1, 2 or 5 times a power of ten, about `target` ticks over `span`. */
function tickStep(span, target) {
  const raw = span / Math.max(1, target);
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

function pct(x) {
  return typeof x === 'number' && Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–';
}

/**
 * Paints the last step's timeline and returns what it drew (page state for tests): per lane the
 * boxes with their times, their x extent and lane middle y in CSS pixels and the label written in
 * them (null where the box is too narrow for it).
 */
function drawPipeline() {
  const card = $('card-pipeline');
  const found = lastPipeline();
  const cfg = state.config && state.config.config && state.config.config.pipeline;
  // A pipeline run shows the card from its config on, so it does not pop in at the first step;
  // any other run never shows it.
  card.hidden = !found && !(cfg && typeof cfg === 'object');
  const canvas = $('pipeline-canvas');
  if (!found) {
    $('pipeline-step').textContent = '';
    $('pipeline-bubble').textContent = card.hidden ? '' : 'waiting for steps';
    canvas.height = 0;
    canvas.style.height = '0px';
    return { visible: !card.hidden, step: null, lanes: [], text: $('pipeline-bubble').textContent };
  }
  const { step, figures } = found;
  const lanes = figures.timeline.map((lane) =>
    (Array.isArray(lane) ? lane : [])
      .filter((b) => Array.isArray(b) && b.length >= 4 && Number.isFinite(b[2]) && Number.isFinite(b[3]))
      .map(([kind, micro, startMs, endMs]) => ({ kind: String(kind), micro, startMs, endMs })),
  );
  const spanMs = Math.max(1e-6, ...lanes.flat().map((b) => b.endMs));

  const cssW = Math.max(300, canvas.parentElement.clientWidth || 600);
  const cssH = PIPE.top + lanes.length * PIPE.laneH + PIPE.bottom;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const plotW = cssW - PIPE.left - PIPE.right;
  const xOf = (ms) => PIPE.left + (ms / spanMs) * plotW;
  const axisY = PIPE.top + lanes.length * PIPE.laneH;

  // Grid and axis first, so the boxes sit on top of the grid lines.
  ctx.font = '11px "DejaVu Sans", system-ui, sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'center';
  const tick = tickStep(spanMs, Math.max(2, Math.floor(plotW / 90)));
  for (let t = 0; t <= spanMs + 1e-9; t += tick) {
    const x = Math.round(xOf(t)) + 0.5;
    ctx.strokeStyle = '#e3e7ec';
    ctx.beginPath();
    ctx.moveTo(x, PIPE.top);
    ctx.lineTo(x, axisY + 4);
    ctx.stroke();
    ctx.fillStyle = '#6b7785';
    ctx.fillText(Number(t.toPrecision(6)).toString(), x, axisY + 6);
  }
  ctx.textAlign = 'right';
  ctx.fillText('ms from step start', PIPE.left + plotW, axisY + 19);

  const drawn = lanes.map((lane, s) => {
    const y = PIPE.top + s * PIPE.laneH;
    ctx.fillStyle = COLORS.idle; // what shows between the boxes is the stage waiting: its bubble
    ctx.fillRect(PIPE.left, y + PIPE.boxPad, plotW, PIPE.laneH - 2 * PIPE.boxPad);
    ctx.fillStyle = '#1f2933';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillText(`stage ${s}`, PIPE.left - 8, y + PIPE.laneH / 2);
    return lane.map((b) => {
      const x0 = xOf(b.startMs);
      const x1 = xOf(b.endMs);
      // Back-to-back boxes get a hairline gap so each stays a box of its own.
      const w = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0));
      ctx.fillStyle = b.kind === 'B' ? COLORS.backward : COLORS.forward;
      ctx.fillRect(x0, y + PIPE.boxPad, w, PIPE.laneH - 2 * PIPE.boxPad);
      const text = String(b.micro);
      let label = null;
      if (ctx.measureText(text).width + 4 <= w) {
        ctx.fillStyle = '#fff';
        ctx.textAlign = 'center';
        ctx.fillText(text, x0 + w / 2, y + PIPE.laneH / 2);
        label = text;
      }
      return { ...b, x0, x1, y: y + PIPE.laneH / 2, label };
    });
  });
  canvas.onmousemove = (e) => {
    const r = canvas.getBoundingClientRect();
    const s = Math.floor((e.clientY - r.top - PIPE.top) / PIPE.laneH);
    const x = e.clientX - r.left;
    const b = (drawn[s] || []).find((d) => x >= d.x0 && x <= d.x1);
    canvas.title = b
      ? `stage ${s}: ${b.kind === 'B' ? 'backward' : 'forward'} of micro-batch ${b.micro}, ` +
        `${b.startMs.toFixed(1)}–${b.endMs.toFixed(1)} ms (${(b.endMs - b.startMs).toFixed(1)} ms)`
      : '';
  };

  const perStage = figures.stages.map((st, i) => `stage ${i} ${pct(st && st.bubble)}`).join(', ');
  const text =
    `${figures.schedule} schedule, ${figures.microBatches} micro-batches · ` +
    `bubble ${pct(figures.bubble)} mean (${perStage})`;
  $('pipeline-bubble').textContent = text;
  $('pipeline-step').textContent = `step ${step}, ${spanMs.toFixed(0)} ms`;
  legend($('legend-pipeline'), [
    ['forward (F)', COLORS.forward],
    ['backward (B)', COLORS.backward],
    ['waiting (bubble)', COLORS.idle],
  ]);
  card.dataset.lanes = String(drawn.length);
  return { visible: true, step, schedule: figures.schedule, spanMs, width: cssW, lanes: drawn, text };
}

// ---- text panels ------------------------------------------------------------------------------

function drawFacts() {
  const c = state.config;
  const last = state.steps[state.steps.length - 1];
  const lastVal = [...state.val.entries()].sort((a, b) => a[0] - b[0]).pop();
  $('fact-strategy').textContent = c ? c.strategy : '–';
  $('fact-backend').textContent = c ? c.backend : '–';
  $('fact-world').textContent = c ? String(c.worldSize) : '–';
  $('fact-params').textContent = c ? fmtNum(c.paramCount) : '–';
  $('fact-step').textContent = last ? String(last.step) : '–';
  $('fact-loss').textContent = last ? fmtNum(last.loss) : '–';
  $('fact-val').textContent = lastVal ? fmtNum(lastVal[1]) : '–';
  $('fact-tps').textContent = last ? fmtNum(last.tokensPerSec, 3) : '–';

  const rows = [];
  if (state.done) {
    // results first: the config below may scroll
    const s = state.done.summary || {};
    if (typeof s.finalLoss === 'number') rows.push(['final loss', fmtNum(s.finalLoss)]);
    if (typeof s.finalValLoss === 'number') rows.push(['final val loss', fmtNum(s.finalValLoss)]);
    const ms = s.memory && s.memory.modelStateBytes;
    if (typeof ms === 'number') rows.push(['model state / rank', fmtBytes(ms)]);
  }
  if (c)
    for (const [k, v] of Object.entries(c.config || {})) {
      if (v === null || typeof v === 'object') continue;
      rows.push([k, String(v)]);
    }
  $('config').replaceChildren(
    ...rows.map(([k, v]) => {
      const tr = document.createElement('tr');
      const a = document.createElement('td');
      a.textContent = k;
      const b = document.createElement('td');
      b.textContent = v;
      tr.append(a, b);
      return tr;
    }),
  );

  const pre = $('sample');
  if (state.sample) {
    pre.textContent = state.sample.text;
    $('sample-step').textContent = `step ${state.sample.step}`;
  }
  pre.dataset.samples = state.sample ? '1' : '0';
}

// The connection: 'connecting' (never opened yet), 'loading' (open, history not in yet), 'open'
// or 'closed'. A finished run stays "finished" when its server goes away: nothing more will come.
let connection = 'connecting';

function showStatus() {
  const s =
    state.done && connection !== 'loading'
      ? 'finished'
      : { connecting: 'connecting', loading: 'loading', open: 'live', closed: 'disconnected' }[connection];
  const el = $('status');
  el.dataset.state = s;
  el.textContent = s;
}

// ---- main loop --------------------------------------------------------------------------------

let pending = null;
function scheduleDraw() {
  if (pending !== null) return;
  // setTimeout rather than requestAnimationFrame: rAF stops in hidden tabs, and a dashboard left in a
  // background tab should still be current when you come back.
  pending = setTimeout(() => {
    pending = null;
    draw();
  }, 100);
}

function draw() {
  const counts = drawCharts();
  counts.ranksTime = drawRankTime();
  counts.ranksMemory = drawRankMemory();
  window.zeroringDashboard.pipeline = drawPipeline();
  drawFacts();
  counts.samples = state.sample ? 1 : 0;
  counts.events = state.events;
  window.zeroringDashboard.counts = counts;
  window.zeroringDashboard.done = state.done !== null;
  window.zeroringDashboard.draws++;
  showStatus();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  let first = true;
  ws.onopen = () => {
    window.zeroringDashboard.connected = true;
    connection = 'loading';
    showStatus();
  };
  ws.onmessage = (msg) => {
    const events = JSON.parse(msg.data);
    if (first) state = emptyState(); // history: rebuild from scratch
    for (const ev of events) apply(ev);
    if (!first) return scheduleDraw();
    // The history is in: paint it now rather than after the throttle, so "live" never shows
    // over empty fields.
    first = false;
    connection = 'open';
    if (pending !== null) {
      clearTimeout(pending);
      pending = null;
    }
    draw();
  };
  ws.onclose = (ev) => {
    window.zeroringDashboard.connected = false;
    connection = 'closed';
    showStatus();
    // 1012: the run was started over in the same directory; come back at once for its history.
    // Otherwise the run (or `zeroring dashboard`) may come back later.
    setTimeout(connect, ev.code === 1012 ? 100 : 2000);
  };
}

window.zeroringDashboard = { counts: {}, connected: false, done: false, draws: 0, charts, pipeline: null };
setupCharts();
draw();
connect();
