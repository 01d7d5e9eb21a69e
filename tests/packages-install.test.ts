// The packages as a JavaScript user gets them: built to JavaScript (dist/, `pnpm build`), a plain
// .mjs script that imports them runs under `zeroring launch`, in the workspace and from the packed
// tarballs installed into an empty folder outside it. The install is offline: pnpm takes every
// dependency from its store, at the versions the workspace installed (pinned by overrides), so the
// test needs no network.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const script = join(root, 'tests/fixtures/packaged/ddp.mjs');
const PACKAGES: Record<string, string> = {
  core: '@zeroring/core',
  comm: '@zeroring/comm',
  backend: '@zeroring/backend',
  train: '@zeroring/train',
  gpt: '@zeroring/gpt',
  cli: 'zeroring',
};
const work = mkdtempSync(join(tmpdir(), 'zr-packages-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string): string {
  const env: NodeJS.ProcessEnv = { ...process.env, ZERORING_LOG_FORMAT: 'json' };
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  const output = `${r.stdout}${r.stderr}`;
  expect(r.status, `${cmd} ${args.join(' ')}\n${output}`).toBe(0);
  return output;
}

/** Each rank's float64 sum of squares of its final parameters, from the RESULT lines. */
function results(output: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of output.matchAll(/RESULT rank=(\d+) world=2 sumsq=([\d.e+-]+)/g)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

/** The version of each dependency the workspace installed, to pin the outside install to it. */
function installedVersions(): Record<string, string> {
  const pins: Record<string, string> = {};
  for (const dir of Object.keys(PACKAGES)) {
    const manifest = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8'));
    for (const dep of Object.keys(manifest.dependencies ?? {})) {
      if (dep.startsWith('@zeroring/')) continue;
      const installed = realpathSync(join(root, 'packages', dir, 'node_modules', dep));
      pins[dep] = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).version;
    }
  }
  return pins;
}

describe('the packages from plain JavaScript', () => {
  it('a .mjs DDP script runs under zeroring launch in the workspace, and from the packed tarballs outside it', () => {
    const cli = join(root, 'packages/cli/bin/zeroring.js');
    const inWorkspace = results(run(process.execPath, [cli, 'launch', '--nproc-per-node', '2', script], root));
    expect(inWorkspace.size).toBe(2);
    expect(inWorkspace.get(0)).toBeGreaterThan(0);
    expect(inWorkspace.get(1)).toBe(inWorkspace.get(0)); // DDP keeps the ranks identical

    const tarballs = join(work, 'tarballs');
    const tgz: Record<string, string> = {};
    for (const [dir, name] of Object.entries(PACKAGES)) {
      const out = run('pnpm', ['pack', '--pack-destination', tarballs], join(root, 'packages', dir));
      tgz[name] = out.trim().split('\n').pop()!.trim();
    }
    const app = join(work, 'app');
    run('mkdir', ['-p', app], work);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // The tarballs name each other by version; overrides point those names at the files.
    const overrides = {
      ...installedVersions(),
      ...Object.fromEntries(Object.entries(tgz).map(([n, f]) => [n, `file:${f}`])),
    };
    const yaml = [
      'overrides:',
      ...Object.entries(overrides).map(([n, v]) => `  '${n}': '${v}'`),
      'allowBuilds:',
      ...['bufferutil', 'esbuild', 'msgpackr-extract', 'webgpu'].map((b) => `  ${b}: true`),
    ];
    writeFileSync(join(app, 'pnpm-workspace.yaml'), yaml.join('\n') + '\n');
    run('pnpm', ['add', '--offline', ...Object.values(tgz)], app);
    copyFileSync(script, join(app, 'ddp.mjs'));
    const out = run(join(app, 'node_modules/.bin/zeroring'), ['launch', '--nproc-per-node', '2', 'ddp.mjs'], app);
    expect(results(out)).toEqual(inWorkspace);
  });
});
