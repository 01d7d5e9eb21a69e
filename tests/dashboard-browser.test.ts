// The dashboard in a real browser during a real run: `zeroring train --nproc 2 --strategy ddp
// --dashboard 0` trains the tiny GPT on Moby Dick for a few steps on two worker processes (wasm
// backend: the fastest CPU one) while headless Debian Chromium (driven by playwright-core,
// installed by scripts/setup-browser.sh) watches the page. We check that every chart received
// points (as many as the run wrote to metrics.jsonl), that uPlot actually painted, and that a
// screenshot is non-empty.
//
// The screenshot goes to a temp dir; ZERORING_UPDATE_DOCS=1 writes docs/dashboard.png instead
// (the README's picture), so ordinary test runs leave the work tree alone.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { chromium, type BrowserContext } from 'playwright-core';

const CHROMIUM = process.env.ZERORING_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const skipReason = haveChromium ? '' : ` [SKIPPED: ${CHROMIUM} not found; run scripts/setup-browser.sh]`;
if (!haveChromium) console.warn(`dashboard browser test skipped: ${CHROMIUM} not found; run scripts/setup-browser.sh`);

const RANKS = 2;
const STEPS = 6;
const EVAL_INTERVAL = 3;

interface PageState {
  counts: { loss?: number; valLoss?: number; tokensPerSec?: number; time?: number; ranksTime?: number; ranksMemory?: number; samples?: number; events?: number };
  connected: boolean;
  done: boolean;
}

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function launchChromium(): Promise<BrowserContext> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-chromium-'));
  cleanups.push(() => fs.rmSync(profile, { recursive: true, force: true }));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    viewport: { width: 1280, height: 960 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  cleanups.push(() => ctx.close());
  return ctx;
}

const bin = path.resolve(import.meta.dirname, '../packages/cli/bin/zeroring.js');

/** Starts a short real training run with the dashboard on a free port; resolves its URL. */
function startRun(outDir: string) {
  const child = spawn(
    process.execPath,
    [bin, 'train', '--nproc', String(RANKS), '--strategy', 'ddp', '--backend', 'wasm', '--steps', String(STEPS), '--batch-size', '4', '--eval-interval', String(EVAL_INTERVAL),
      '--eval-batches', '1', '--sample-tokens', '60', '--out', outDir, '--dashboard', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ZERORING_LOG_FORMAT: 'json' } },
  );
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  const url = new Promise<string>((resolve, reject) => {
    const scan = (chunk: Buffer) => {
      output += chunk;
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(output);
      if (m) resolve(m[1]);
    };
    child.stdout!.on('data', scan);
    child.stderr!.on('data', scan);
    void exited.then((code) => reject(new Error(`zeroring train exited (${code}) before serving the dashboard:\n${output}`)));
  });
  return { url, exited, output: () => output };
}

describe('dashboard in headless Chromium', () => {
  it.skipIf(!haveChromium)(`charts receive points from a real training run; screenshot is non-empty${skipReason}`, async () => {
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-dash-run-'));
    cleanups.push(() => fs.rmSync(outDir, { recursive: true, force: true }));
    const run = startRun(outDir);
    const ctx = await launchChromium();
    const page = await ctx.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(await run.url, { timeout: 120_000 });
    await page.waitForFunction(() => (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard.connected);

    // Points arrive while the run is still going (live over the WebSocket), not only at the end.
    const live = await Promise.race([
      page
        .waitForFunction(() => ((window as unknown as { zeroringDashboard: PageState }).zeroringDashboard.counts.loss ?? 0) >= 1, undefined, { timeout: 240_000 })
        .then(() => 'live'),
      run.exited.then(() => 'run ended first'),
    ]);
    expect(live).toBe('live');

    // The page keeps what it received after the run (and its server) ends.
    const code = await run.exited;
    expect(code, run.output()).toBe(0);
    await page.waitForFunction(
      () => (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard.done,
      undefined,
      { timeout: 30_000 },
    );
    const metricsLines = fs.readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n').length;
    expect(metricsLines).toBe(STEPS);
    const state = await page.evaluate(() => (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard);
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
    expect((await page.textContent('#sample'))!.length).toBeGreaterThanOrEqual(60);
    expect(await page.textContent('#status')).toBe('finished');

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
    expect(coloured).toHaveLength(3);
    for (const n of coloured) expect(n).toBeGreaterThan(50);

    const out = process.env.ZERORING_UPDATE_DOCS === '1'
      ? path.resolve(import.meta.dirname, '../docs/dashboard.png')
      : path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zr-shot-')), 'dashboard.png');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const png = await page.screenshot({ path: out, fullPage: true });
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(png.length).toBeGreaterThan(30_000); // a blank page of this size is a few KB
    expect(pageErrors).toEqual([]);
  }, 300_000);
});
