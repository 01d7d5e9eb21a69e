// The dashboard server over real sockets: static page + uPlot from node_modules, WebSocket
// history then live events, following a run directory as it grows, and `zeroring dashboard DIR`.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import type WebSocketType from 'ws';
import { startDashboard, startDashboardThread, readRunEvents, DashboardStartError, type Dashboard } from 'zeroring';
import { eventsFileWriter, EVENTS_FILE, type TrainEvent } from '@zeroring/train';
import { startCli } from './fixtures/cli.ts';

// ws is a dependency of the cli package, not of the workspace root where this file lives.
const WebSocket = createRequire(new URL('../packages/cli/package.json', import.meta.url))('ws') as typeof WebSocketType;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function dashboard(opts: Parameters<typeof startDashboard>[0]): Promise<Dashboard> {
  const d = await startDashboard(opts);
  cleanups.push(() => d.close());
  return d;
}

function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zr-dash-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mem = { params: { device: 4096, host: 0 }, optimizer: { device: 0, host: 8192 } };
const step = (n: number, loss: number): TrainEvent => ({
  type: 'step',
  step: n,
  loss,
  tokensPerSec: 100 * n,
  computeMs: 10,
  commMs: 2,
  optimMs: 1,
  memory: mem,
});
const config: TrainEvent = {
  type: 'config',
  config: { model: 'tiny' },
  paramCount: 1234,
  strategy: 'ddp',
  backend: 'cpu',
  worldSize: 2,
};

/** A WebSocket client that collects every event it receives, with a wait-until helper. */
async function client(url: string) {
  const ws = new WebSocket(url.replace('http', 'ws') + 'ws');
  cleanups.push(() => ws.terminate());
  const messages: TrainEvent[][] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data) => {
    messages.push(JSON.parse(String(data)) as TrainEvent[]);
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const until = async (pred: () => boolean) => {
    while (!pred()) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { ws, messages, events: () => messages.flat(), until };
}

describe('dashboard server', () => {
  it('serves the page, uPlot from node_modules, and 404s the rest', async () => {
    const d = await dashboard({ port: 0 });
    expect(d.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(d.url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('/vendor/uPlot.iife.min.js');
    expect(html).toContain('/app.js');
    const uplot = await fetch(d.url + 'vendor/uPlot.iife.min.js');
    expect(uplot.headers.get('content-type')).toContain('javascript');
    expect((await uplot.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(d.url + 'app.js')).status).toBe(200);
    expect((await fetch(d.url + 'vendor/uPlot.min.css')).status).toBe(200);
    expect((await fetch(d.url + '../package.json')).status).toBe(404);
    expect((await fetch(d.url + 'nope')).status).toBe(404);
  });

  it('sends the history on connect, then each new event live', async () => {
    const d = await dashboard({ port: 0 });
    d.publish(config);
    d.publish(step(1, 4.0));
    const c = await client(d.url);
    await c.until(() => c.messages.length >= 1);
    expect(c.messages[0]).toEqual([config, step(1, 4.0)]);
    d.publish(step(2, 3.5));
    d.publish({ type: 'val', step: 2, valLoss: 3.7 });
    await c.until(() => c.events().length >= 4);
    expect(c.messages.slice(1)).toEqual([[step(2, 3.5)], [{ type: 'val', step: 2, valLoss: 3.7 }]]);
    const late = await client(d.url);
    await late.until(() => late.messages.length >= 1);
    expect(late.messages[0]).toHaveLength(4);
    expect((await (await fetch(d.url + 'events.json')).json()) as unknown[]).toHaveLength(4);
  });

  it('follows events.jsonl of a run directory as the trainer appends to it', async () => {
    const dir = tmpDir();
    const write = eventsFileWriter(dir);
    write(config);
    write(step(1, 4.0));
    // Half a line on disk: the follower must wait for the newline, not parse garbage.
    fs.appendFileSync(path.join(dir, EVENTS_FILE), JSON.stringify(step(2, 3.0)).slice(0, 20));
    const d = await dashboard({ port: 0, outDir: dir, pollMs: 25 });
    const c = await client(d.url);
    await c.until(() => c.events().length >= 2);
    expect(c.events()).toEqual([config, step(1, 4.0)]);
    fs.appendFileSync(path.join(dir, EVENTS_FILE), JSON.stringify(step(2, 3.0)).slice(20) + '\n');
    write({ type: 'done', summary: { finalLoss: 3.0 } });
    await c.until(() => c.events().length >= 4);
    expect(c.events().slice(2)).toEqual([step(2, 3.0), { type: 'done', summary: { finalLoss: 3.0 } }]);
  });

  it("starts over when a new run truncates the directory's events.jsonl", async () => {
    const dir = tmpDir();
    const write = eventsFileWriter(dir);
    write(config);
    write(step(1, 4.0));
    write(step(2, 3.0));
    const d = await dashboard({ port: 0, outDir: dir, pollMs: 25 });
    const c = await client(d.url);
    await c.until(() => c.events().length >= 3);
    const closed = new Promise<number>((resolve) => c.ws.once('close', (code) => resolve(code)));
    const again = eventsFileWriter(dir); // truncates, as `zeroring train --out DIR` does without --resume
    again(config);
    expect(await closed).toBe(1012); // pages reconnect for the new history
    const fresh = await client(d.url);
    await fresh.until(() => fresh.messages.length >= 1);
    again(step(1, 5.0));
    await fresh.until(() => fresh.events().length >= 2);
    expect(fresh.events()).toEqual([config, step(1, 5.0)]);
  });

  it('rebuilds events from metrics.jsonl + summary.json when there is no events.jsonl', () => {
    const dir = tmpDir();
    const stage = { computeMs: 2, waitMs: 1, bubble: 0.5, peakActivationBytes: 64, peakLive: 1 };
    const pipeline = {
      schedule: 'gpipe',
      microBatches: 1,
      bubble: 0.5,
      stages: [stage, stage],
      timeline: [
        [
          ['F', 0, 0, 1],
          ['B', 0, 3, 4],
        ],
        [
          ['F', 0, 1, 2],
          ['B', 0, 2, 3],
        ],
      ],
    };
    fs.writeFileSync(
      path.join(dir, 'metrics.jsonl'),
      [
        { step: 1, loss: 5, tokensPerSec: 10, computeMs: 3, commMs: 1, memory: mem },
        { step: 2, loss: 4, tokensPerSec: 12, computeMs: 3, commMs: 1, commExposedMs: 0.25, memory: mem, pipeline },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n',
    );
    fs.writeFileSync(
      path.join(dir, 'summary.json'),
      JSON.stringify({
        config: { strategy: 'zero2', backend: 'wasm', nproc: 4 },
        steps: 2,
        paramCount: 99,
        finalLoss: 4,
      }),
    );
    const events = readRunEvents(dir);
    expect(events.map((e) => e.type)).toEqual(['step', 'step', 'config', 'done']);
    expect(events[1]).toMatchObject({ type: 'step', step: 2, loss: 4, optimMs: 0, commExposedMs: 0.25 });
    expect(events[0]).not.toHaveProperty('commExposedMs'); // absent in a one-rank run's rows
    expect(events[1]).toMatchObject({ pipeline }); // the page draws the pipeline timeline from it
    expect(events[0]).not.toHaveProperty('pipeline');
    expect(events[2]).toMatchObject({
      type: 'config',
      strategy: 'zero2',
      backend: 'wasm',
      worldSize: 4,
      paramCount: 99,
    });
    expect(() => readRunEvents(path.join(dir, 'missing'))).toThrow(/run directory ".*missing" does not exist/);
  });

  it('`zeroring dashboard DIR` serves a run directory', async () => {
    const dir = tmpDir();
    const write = eventsFileWriter(dir);
    write(config);
    write(step(1, 2.5));
    const server = startCli(['dashboard', dir, '--port', '0']);
    cleanups.push(() => server.stop());
    const url = await server.line(/(http:\/\/127\.0\.0\.1:\d+\/)/);
    const events = (await (await fetch(url + 'events.json')).json()) as TrainEvent[];
    expect(events).toEqual([config, step(1, 2.5)]);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0); // SIGTERM closes the server cleanly
  });

  it('`zeroring train --dashboard` keeps serving the finished run until Ctrl-C, then exits 0', async () => {
    const dir = tmpDir();
    // One process: training runs in the command itself, the dashboard on its thread.
    const args = [
      'train',
      '--backend',
      'wasm',
      '--steps',
      '2',
      '--batch-size',
      '2',
      '--eval-interval',
      '2',
      '--eval-batches',
      '1',
      '--sample-tokens',
      '0',
      '--out',
      dir,
      '--dashboard',
      '0',
    ];
    const run = startCli(args);
    cleanups.push(() => run.stop('SIGKILL'));
    const url = await run.line(/training done; dashboard still serving the finished run at (http:\/\/[\d.:]+\/)/);
    expect(run.output()).toContain(`dashboard: ${url}`); // the same server as during training

    // Training is over and the command is still there, answering for the page and its history.
    expect(fs.existsSync(path.join(dir, 'summary.json'))).toBe(true);
    expect(run.child.exitCode).toBeNull();
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/app.js');
    const events = (await (await fetch(url + 'events.json')).json()) as TrainEvent[];
    expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step)).toEqual([1, 2]);
    expect(events.at(-1)?.type).toBe('done');
    const c = await client(url);
    await c.until(() => c.events().length >= events.length);

    run.child.kill('SIGINT');
    expect(await run.exited, run.output()).toBe(0);
    await expect(fetch(url)).rejects.toThrow(); // the server went with it
  });

  it('on its own thread it answers while this thread is blocked (as during a tfjs kernel)', async () => {
    const d = await startDashboardThread({ port: 0 });
    cleanups.push(() => d.close());
    d.publish(config);
    d.publish(step(1, 3.25));
    // spawnSync blocks this thread until the child is done: the child can only get answers
    // if the server runs elsewhere.
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `fetch(${JSON.stringify(d.url)}).then(r=>r.text())` +
          `.then(t=>fetch(${JSON.stringify(d.url + 'events.json')}).then(r=>r.text())` +
          `.then(e=>console.log(t.includes('uPlot') ? 'page ok' : 'page bad', e)))`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.stdout.startsWith('page ok ')).toBe(true);
    expect(JSON.parse(child.stdout.slice('page ok '.length))).toEqual([config, step(1, 3.25)]);
    const c = await client(d.url);
    await c.until(() => c.events().length >= 2);
    d.publish({ type: 'done', summary: {} });
    await c.until(() => c.events().length >= 3);
    const closed = new Promise<number>((resolve) => c.ws.once('close', (code) => resolve(code)));
    await d.close();
    expect(await closed).toBe(1001); // a polite close, after the last event
  });

  it('names the address when the port is taken', async () => {
    const first = await dashboard({ port: 0 });
    await expect(startDashboardThread({ port: first.port })).rejects.toThrow(DashboardStartError);
    await expect(startDashboardThread({ port: first.port })).rejects.toThrow(`127.0.0.1:${first.port}`);
    await expect(startDashboard({ port: first.port })).rejects.toThrow(/EADDRINUSE/); // and no uncaught error
  });
});
