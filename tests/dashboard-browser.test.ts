// The dashboard in a real browser during a real run: `zeroring train --nproc 2 --strategy ddp
// --dashboard 0` trains the tiny GPT on Moby Dick for a few steps on two worker processes (wasm
// backend: the fastest CPU one) while headless Debian Chromium (driven by playwright-core,
// installed by scripts/setup-browser.sh) watches the page. We check that every chart received
// points (as many as the run wrote to metrics.jsonl), that uPlot actually painted, that legends
// and the validation series read well, that the finished run stays served until Ctrl-C, and that
// a screenshot is non-empty. A second test opens `zeroring dashboard DIR` and watches the badge.
// A third runs a two-stage pipeline (`--pp 2`) and checks the timeline the page paints on its
// canvas against the last step event, live and when `zeroring dashboard DIR` replays the run.
//
// The screenshot goes to a temp dir; ZERORING_UPDATE_DOCS=1 writes docs/dashboard.png instead
// (the README's picture), so ordinary test runs leave the work tree alone.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { eventsFileWriter, type TrainEvent } from '@zeroring/train';
import { startCli as startZeroring, type StartedCli } from './fixtures/cli.ts';

const CHROMIUM = process.env.ZERORING_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const skipReason = haveChromium ? '' : ` [SKIPPED: ${CHROMIUM} not found; run scripts/setup-browser.sh]`;
if (!haveChromium) console.warn(`dashboard browser test skipped: ${CHROMIUM} not found; run scripts/setup-browser.sh`);

const RANKS = 2;
const STEPS = 6;
const EVAL_INTERVAL = 3;

interface PageState {
  counts: {
    loss?: number;
    valLoss?: number;
    tokensPerSec?: number;
    time?: number;
    ranksTime?: number;
    ranksMemory?: number;
    samples?: number;
    events?: number;
  };
  connected: boolean;
  done: boolean;
  pipeline: PipelineState | null;
}
/** What app.js's drawPipeline painted: per stage lane its boxes, x extent and lane middle in CSS px. */
interface DrawnBox {
  kind: string;
  micro: number;
  startMs: number;
  endMs: number;
  x0: number;
  x1: number;
  y: number;
  label: string | null;
}
interface PipelineState {
  visible: boolean;
  step: number | null;
  schedule?: string;
  lanes: DrawnBox[][];
  text: string;
}
interface Plot {
  valToPos(v: number, scale: string, canvasPixels?: boolean): number;
}
type Win = { zeroringDashboard: PageState & { charts: Record<string, Plot> } };
const SERVING = /training done; dashboard still serving the finished run at (http:\S+) — press Ctrl-C to exit/;

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** `zeroring args...` left running, stopped (SIGTERM) after the test. */
function startCli(args: string[]): StartedCli {
  const run = startZeroring(args);
  cleanups.push(() => run.stop());
  return run;
}

async function launchChromium(): Promise<BrowserContext> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-chromium-'));
  cleanups.push(() => fs.rmSync(profile, { recursive: true, force: true }));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    viewport: { width: 1280, height: 960 },
    args: (
      '--headless --no-sandbox --disable-gpu --disable-quic ' +
      '--no-first-run --disable-background-networking --disable-component-update --disable-sync'
    ).split(' '),
  });
  cleanups.push(() => ctx.close());
  return ctx;
}

/** Processes (other than this one) whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Legend rows of a chart as [label, value] text, in series order. */
async function legend(page: Page, chartId: string): Promise<Array<[string, string]>> {
  return page.$$eval(`#${chartId} .u-legend tr`, (rows) =>
    rows.map(
      (r) =>
        [
          (r.querySelector('.u-label')?.textContent ?? '').trim(),
          (r.querySelector('.u-value')?.textContent ?? '').trim(),
        ] as [string, string],
    ),
  );
}

/** Pixels of the validation colour (#e15759) in the loss canvas column at step `x`, ±1 px. */
async function valPixelsAt(page: Page, x: number): Promise<number> {
  return page.evaluate((step) => {
    const plot = (window as unknown as Win).zeroringDashboard.charts['chart-loss'];
    const canvas = document.querySelector('#chart-loss canvas') as HTMLCanvasElement;
    const col = Math.round(plot.valToPos(step, 'x', true));
    const px = canvas.getContext('2d')!.getImageData(col - 1, 0, 3, canvas.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] > 170 && px[i + 1] < 140 && px[i + 2] < 140 && px[i + 3] > 0) n++;
    return n;
  }, x);
}

describe('dashboard in headless Chromium', () => {
  const title = 'charts receive points from a real training run, which stays served until Ctrl-C';
  it.skipIf(!haveChromium)(
    `${title}${skipReason}`,
    async () => {
      const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-dash-run-'));
      cleanups.push(() => fs.rmSync(outDir, { recursive: true, force: true }));
      const run = startCli([
        'train',
        '--nproc',
        String(RANKS),
        '--strategy',
        'ddp',
        '--backend',
        'wasm',
        '--steps',
        String(STEPS),
        '--batch-size',
        '4',
        '--eval-interval',
        String(EVAL_INTERVAL),
        '--eval-batches',
        '1',
        '--sample-tokens',
        '300',
        '--out',
        outDir,
        '--dashboard',
        '0',
      ]);
      const url = run.line(/dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/);
      const serving = run.line(SERVING);
      const ctx = await launchChromium();
      const page = await ctx.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(await url, { timeout: 120_000 });
      await page.waitForFunction(() => (window as unknown as Win).zeroringDashboard.connected);

      // Points arrive while the run is still going (live over the WebSocket), not only at the end.
      const live = await Promise.race([
        page
          .waitForFunction(() => ((window as unknown as Win).zeroringDashboard.counts.loss ?? 0) >= 1, undefined, {
            timeout: 240_000,
          })
          .then(() => 'live'),
        serving.then(() => 'run ended first'),
      ]);
      expect(live).toBe('live');

      // Training ends; the command stays, serving the finished run.
      expect(await serving).toBe(await url);
      await page.waitForFunction(() => (window as unknown as Win).zeroringDashboard.done, undefined, {
        timeout: 30_000,
      });
      const metricsLines = fs.readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n').length;
      expect(metricsLines).toBe(STEPS);
      const state = await page.evaluate(() => (window as unknown as Win).zeroringDashboard);
      expect(state.counts).toMatchObject({
        loss: STEPS,
        valLoss: STEPS / EVAL_INTERVAL + 1, // before the first step, then every EVAL_INTERVAL
        tokensPerSec: STEPS,
        time: STEPS,
        ranksTime: RANKS, // every rank's split arrives in rank 0's step events
        ranksMemory: RANKS,
        samples: 1,
      });
      expect(await page.getAttribute('#chart-loss', 'data-points')).toBe(String(STEPS + STEPS / EVAL_INTERVAL + 1));
      expect(await page.textContent('#fact-strategy')).toBe('ddp');
      expect(await page.textContent('#fact-backend')).toBe('wasm');
      expect(await page.textContent('#fact-world')).toBe(String(RANKS));
      expect(await page.locator('#ranks-time .bar-row').count()).toBe(RANKS);
      expect((await page.textContent('#sample'))!.length).toBeGreaterThanOrEqual(300);
      expect(await page.textContent('#status')).toBe('finished');

      // Nothing hovered: legends read the latest values, the same ones the header shows.
      expect(await legend(page, 'chart-loss')).toEqual([
        ['step', String(STEPS)],
        ['train', await page.textContent('#fact-loss')],
        ['val', await page.textContent('#fact-val')],
      ]);
      expect(await legend(page, 'chart-tps')).toEqual([
        ['step', String(STEPS)],
        ['tokens/s', await page.textContent('#fact-tps')],
      ]);
      const timeLegend = await legend(page, 'chart-time');
      expect(timeLegend.map(([label]) => label)).toEqual(['step', 'compute', 'comm wait', 'optimizer']);
      for (const [, value] of timeLegend.slice(1)) expect(value).toMatch(/^\d+(\.\d)?$/);

      // uPlot painted: each chart canvas holds coloured (non-grey) pixels, i.e. series lines.
      const coloured = await page.evaluate(() =>
        [...document.querySelectorAll('.chart canvas')].map((c) => {
          const canvas = c as HTMLCanvasElement;
          const px = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          let n = 0;
          for (let i = 0; i < px.length; i += 4) {
            const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
            if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 40) n++;
          }
          return n;
        }),
      );
      // No card is mostly blank: its content reaches down most of its height (grid rows stretch
      // every card to the tallest of its row).
      const filled = await page.$$eval('main .card:not([hidden])', (cards) =>
        cards.map((card) => {
          const box = card.getBoundingClientRect();
          const bottom = Math.max(...[...card.children].map((c) => c.getBoundingClientRect().bottom));
          const title = card.querySelector('h2')?.firstChild?.textContent?.trim();
          return { card: title, share: (bottom - box.top) / box.height };
        }),
      );
      expect(filled.map((f) => f.card)).toEqual([
        'Loss',
        'Throughput',
        'Time per step',
        'Time split per rank',
        'Run',
        'Latest sample',
      ]);
      for (const f of filled) expect(f.share, f.card).toBeGreaterThan(0.5);
      // No pipeline in this run: its panel stays hidden.
      expect(await page.isHidden('#card-pipeline')).toBe(true);
      expect(state.pipeline).toMatchObject({ visible: false, lanes: [] });
      expect(coloured).toHaveLength(3);
      for (const n of coloured) expect(n).toBeGreaterThan(50);
      // Validation is evaluated at steps 0, 3 and 6: dots there, and no line through the steps between.
      expect(await valPixelsAt(page, EVAL_INTERVAL)).toBeGreaterThan(0);
      expect(await valPixelsAt(page, EVAL_INTERVAL / 2)).toBe(0);
      expect(await valPixelsAt(page, EVAL_INTERVAL * 1.5)).toBe(0);

      const out =
        process.env.ZERORING_UPDATE_DOCS === '1'
          ? path.resolve(import.meta.dirname, '../docs/dashboard.png')
          : path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zr-shot-')), 'dashboard.png');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const png = await page.screenshot({ path: out, fullPage: true });
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      expect(png.length).toBeGreaterThan(30_000); // a blank page of this size is a few KB

      // Still served after training: the page itself, the history, and a fresh load of both.
      expect(run.child.exitCode).toBeNull();
      expect((await fetch(await url)).status).toBe(200);
      const history = (await (await fetch((await url) + 'events.json')).json()) as TrainEvent[];
      expect(history.at(-1)?.type).toBe('done');
      await page.reload();
      await page.waitForFunction(() => (window as unknown as Win).zeroringDashboard.done, undefined, {
        timeout: 30_000,
      });
      expect(await page.evaluate(() => (window as unknown as Win).zeroringDashboard.counts.loss)).toBe(STEPS);
      expect(await page.textContent('#status')).toBe('finished');
      expect(pageErrors).toEqual([]);

      // Ctrl-C ends it: training succeeded, so exit 0; no worker or server is left behind.
      run.child.kill('SIGINT');
      expect(await run.exited, run.output()).toBe(0);
      expect(run.output()).not.toMatch(/zeroring launch: (stopped|job failed)/);
      expect(processesMentioning(outDir)).toEqual([]);
      await expect(fetch(await url)).rejects.toThrow();
    },
    300_000,
  );

  const loadingTitle = '`zeroring dashboard DIR` shows "loading" until the history arrives';
  it.skipIf(!haveChromium)(
    `${loadingTitle}${skipReason}`,
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-dash-dir-'));
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      const write = eventsFileWriter(dir);
      const config = { model: 'tiny' };
      write({ type: 'config', config, paramCount: 1234, strategy: 'zero2', backend: 'cpu', worldSize: 2 });
      const memory = { params: { device: 4096, host: 0 } };
      const times = { tokensPerSec: 100, computeMs: 10, commMs: 2, optimMs: 1 };
      for (let step = 1; step <= 50; step++) write({ type: 'step', step, loss: 4 - step / 50, ...times, memory });
      const server = startCli(['dashboard', dir, '--port', '0']);
      const url = await server.line(/(http:\/\/127\.0\.0\.1:\d+\/)/);

      const page = await (await launchChromium()).newPage();
      // Records every badge change with what the header showed at that moment. Mutation records are
      // delivered after each task, so a badge set in the socket's open handler is seen before the
      // history (a later message) can fill the header.
      await page.addInitScript(() => {
        const seen: Array<{ state: string; strategy: string; step: string }> = [];
        (window as unknown as { badges: typeof seen }).badges = seen;
        new MutationObserver(() => {
          const badge = document.getElementById('status');
          const state = badge?.dataset.state;
          if (!state || seen.at(-1)?.state === state) return;
          const text = (id: string) => document.getElementById(id)?.textContent ?? '';
          seen.push({ state, strategy: text('fact-strategy'), step: text('fact-step') });
        }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
      });
      type Badge = { state: string; strategy: string; step: string };
      const badges = () => page.evaluate(() => (window as unknown as { badges: Badge[] }).badges);
      await page.goto(url);
      await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'live');
      expect((await badges()).map((b) => b.state)).toEqual(['connecting', 'loading', 'live']);
      expect((await badges()).at(-1)).toEqual({ state: 'live', strategy: 'zero2', step: '50' });

      write({ type: 'done', summary: { finalLoss: 3 } });
      await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'finished');
      expect((await badges()).map((b) => b.state)).toEqual(['connecting', 'loading', 'live', 'finished']);
      server.child.kill('SIGINT');
      expect(await server.exited).toBe(0);
    },
    120_000,
  );

  const pipelineTitle = "a --pp 2 run draws the last step's pipeline timeline, live and replayed from its DIR";
  it.skipIf(!haveChromium)(
    `${pipelineTitle}${skipReason}`,
    async () => {
      const micro = 4;
      const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-dash-pp-'));
      cleanups.push(() => fs.rmSync(outDir, { recursive: true, force: true }));
      const run = startCli(
        ['train', '--nproc', '2', '--pp', '2', '--micro-batches', String(micro), '--schedule', '1f1b'].concat([
          '--steps',
          '4',
          '--backend',
          'wasm',
          '--out',
          outDir,
          '--dashboard',
          '0',
        ]),
      );
      const url = await run.line(/dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/);
      const ctx = await launchChromium();
      const page = await ctx.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(url, { timeout: 60_000 });
      await run.line(SERVING);
      await page.waitForFunction(() => (window as unknown as Win).zeroringDashboard.done, undefined, {
        timeout: 30_000,
      });

      const history = (await (await fetch(url + 'events.json')).json()) as TrainEvent[];
      const last = history.filter((e) => e.type === 'step').at(-1);
      expect(last?.step).toBe(4);
      const figures = last!.pipeline!;
      expect(figures.timeline).toHaveLength(2);
      const drawn = (await page.evaluate(() => (window as unknown as Win).zeroringDashboard.pipeline))!;
      expect(await page.isVisible('#card-pipeline')).toBe(true);
      expect(drawn).toMatchObject({ visible: true, step: 4, schedule: '1f1b' });
      expect(drawn.lanes).toHaveLength(2);
      for (const [s, lane] of drawn.lanes.entries()) {
        // Every instruction of the stage, in order, as the step event has it: M forwards, M backwards.
        expect(lane.map((b) => [b.kind, b.micro, b.startMs, b.endMs])).toEqual(figures.timeline[s]);
        expect(lane).toHaveLength(2 * micro);
        for (const kind of ['F', 'B'])
          expect(lane.filter((b) => b.kind === kind).map((b) => b.micro)).toEqual([0, 1, 2, 3]);
        for (let i = 1; i < lane.length; i++) {
          expect(lane[i - 1].endMs, `stage ${s} box ${i}`).toBeLessThanOrEqual(lane[i].startMs);
          expect(lane[i - 1].x1, `stage ${s} box ${i}`).toBeLessThanOrEqual(lane[i].x0);
        }
        // Labels are the micro-batch numbers; a box too narrow for one carries none.
        for (const b of lane) if (b.label !== null) expect(b.label).toBe(String(b.micro));
        expect(lane.filter((b) => b.label !== null).length, `stage ${s} labels`).toBeGreaterThanOrEqual(micro);
      }
      // Each box is painted in its kind's colour: F blue (#4e79a7), B orange (#f28e2b).
      const painted = await page.evaluate((lanes) => {
        const canvas = document.getElementById('pipeline-canvas') as HTMLCanvasElement;
        const g = canvas.getContext('2d')!;
        const k = canvas.width / canvas.getBoundingClientRect().width;
        return lanes.flat().map((b) => {
          const [r, gr, bl] = g.getImageData(Math.floor((b.x0 + 1) * k), Math.floor((b.y - 8) * k), 1, 1).data;
          const near = (c: number[]) => Math.abs(r - c[0]) + Math.abs(gr - c[1]) + Math.abs(bl - c[2]) < 30;
          return near([78, 121, 167]) ? 'F' : near([242, 142, 43]) ? 'B' : `rgb(${r},${gr},${bl})`;
        });
      }, drawn.lanes);
      expect(painted).toEqual(drawn.lanes.flat().map((b) => b.kind));

      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      const text = await page.textContent('#pipeline-bubble');
      expect(text).toBe(
        `1f1b schedule, ${micro} micro-batches · bubble ${pct(figures.bubble)} mean ` +
          `(stage 0 ${pct(figures.stages[0].bubble)}, stage 1 ${pct(figures.stages[1].bubble)})`,
      );
      expect(drawn.text).toBe(text);

      // `zeroring dashboard DIR` replays the run's events.jsonl: the same timeline on the same page size.
      const replay = startCli(['dashboard', outDir, '--port', '0']);
      const replayPage = await ctx.newPage();
      replayPage.on('pageerror', (e) => pageErrors.push(e.message));
      await replayPage.goto(await replay.line(/(http:\/\/127\.0\.0\.1:\d+\/)/));
      await replayPage.waitForFunction(() => (window as unknown as Win).zeroringDashboard.done);
      expect(await replayPage.evaluate(() => (window as unknown as Win).zeroringDashboard.pipeline)).toEqual(drawn);
      expect(pageErrors).toEqual([]);

      replay.child.kill('SIGINT');
      run.child.kill('SIGINT');
      expect(await replay.exited).toBe(0);
      expect(await run.exited, run.output()).toBe(0);
    },
    120_000,
  );
});
