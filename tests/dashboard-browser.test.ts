// The dashboard in a real browser during a real run: headless Debian Chromium (driven by
// playwright-core, installed by scripts/setup-browser.sh) opens the page, a short training run of
// the tiny GPT on Moby Dick publishes its events, and we check that every chart received points,
// that uPlot actually painted, and that a screenshot is non-empty.
//
// The screenshot goes to a temp dir; ZERORING_UPDATE_DOCS=1 writes docs/dashboard.png instead
// (the README's picture), so ordinary test runs leave the work tree alone.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { initBackend } from '../packages/backend/src/index.ts';
import { createGPT, presets, CharTokenizer, TextDataset, generate, paramsToTensors, mobyDick } from '../packages/gpt/src/index.ts';
import { train } from '../packages/train/src/trainer.ts';
import { LocalStrategy } from '../packages/train/src/strategies/local.ts';
import { startDashboard, type Dashboard } from '../packages/cli/src/dashboard/index.ts';

const CHROMIUM = process.env.ZERORING_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const skipReason = haveChromium ? '' : ` [SKIPPED: ${CHROMIUM} not found; run scripts/setup-browser.sh]`;
if (!haveChromium) console.warn(`dashboard browser test skipped: ${CHROMIUM} not found; run scripts/setup-browser.sh`);

const STEPS = 8;
const EVAL_INTERVAL = 4;

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

/** A short real run: tiny GPT, LocalStrategy on the cpu backend, events straight to the dashboard. */
async function realRun(dash: Dashboard) {
  await initBackend('cpu');
  const text = mobyDick().slice(0, 200_000);
  const tokenizer = CharTokenizer.fromText(text);
  const data = new TextDataset(tokenizer.encode(text), { seed: 1 });
  // The tiny preset, narrowed: the test is about the page, and the machine is shared.
  const config = { ...presets.tiny, nEmbd: 64, vocabSize: tokenizer.vocabSize, blockSize: 32 };
  const model = createGPT(config);
  return train({
    model,
    strategy: new LocalStrategy(),
    data,
    config: { steps: STEPS, batchSize: 4, blockSize: 32, lr: 3e-3, seed: 7, evalInterval: EVAL_INTERVAL, evalBatches: 1 },
    runConfig: { model: 'tiny', backend: 'cpu' },
    backendName: 'cpu',
    onEvent: dash.publish,
    sample: (params) => {
      const tensors = paramsToTensors(params, model);
      try {
        const ids = generate(model, tensors, tokenizer.encode('Call me '), { maxNewTokens: 60, temperature: 0.8, seed: 3 });
        return tokenizer.decode(ids);
      } finally {
        for (const t of Object.values(tensors)) t.dispose();
      }
    },
  });
}

describe('dashboard in headless Chromium', () => {
  it.skipIf(!haveChromium)(`charts receive points from a real training run; screenshot is non-empty${skipReason}`, async () => {
    const dash = await startDashboard({ port: 0 });
    cleanups.push(() => dash.close());
    const ctx = await launchChromium();
    const page = await ctx.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(dash.url);
    // Open before the run: what the page shows must arrive live over the WebSocket.
    await page.waitForFunction(() => (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard.connected);

    const t0 = Date.now();
    const summary = await realRun(dash);
    console.log(`dashboard browser test: ${STEPS}-step run took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(summary.steps).toBe(STEPS);

    await page.waitForFunction(
      (steps) => {
        const d = (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard;
        return d.done && d.counts.loss === steps && d.counts.samples === 1;
      },
      STEPS,
      { timeout: 60_000 },
    );
    const state = await page.evaluate(() => (window as unknown as { zeroringDashboard: PageState }).zeroringDashboard);
    expect(state.counts).toMatchObject({
      loss: STEPS,
      valLoss: STEPS / EVAL_INTERVAL + 1, // before the first step, then every EVAL_INTERVAL
      tokensPerSec: STEPS,
      time: STEPS,
      ranksTime: 1,
      ranksMemory: 1,
      samples: 1,
    });
    expect(await page.getAttribute('#chart-loss', 'data-points')).toBe(String(STEPS + STEPS / EVAL_INTERVAL + 1));
    expect(await page.textContent('#fact-strategy')).toBe('local');
    expect(await page.textContent('#fact-backend')).toBe('cpu');
    expect(await page.textContent('#fact-world')).toBe('1');
    expect(await page.textContent('#sample')).toMatch(/^Call me /);
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
