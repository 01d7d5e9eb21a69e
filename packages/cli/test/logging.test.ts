import { describe, expect, it, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Command } from 'commander';
import { addLoggingOptions, parseLogLevel } from '../src/logging.ts';
import { examples } from '../src/help.ts';

const bin = path.resolve(import.meta.dirname, '../bin/zeroring.js');
const saved = { level: process.env.ZERORING_LOG_LEVEL, format: process.env.ZERORING_LOG_FORMAT };

afterEach(() => {
  for (const [k, v] of [
    ['ZERORING_LOG_LEVEL', saved.level],
    ['ZERORING_LOG_FORMAT', saved.format],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function program(seen: { level?: string; format?: string }): Command {
  const p = new Command('zeroring').exitOverride();
  p.command('work').action(() => {
    seen.level = process.env.ZERORING_LOG_LEVEL;
    seen.format = process.env.ZERORING_LOG_FORMAT;
  });
  return addLoggingOptions(p);
}

describe('--log-level', () => {
  it('sets ZERORING_LOG_LEVEL before the action, given before or after the command', async () => {
    const a: { level?: string } = {};
    await program(a).parseAsync(['--log-level', 'debug', 'work'], { from: 'user' });
    expect(a.level).toBe('debug');
    const b: { level?: string; format?: string } = {};
    await program(b).parseAsync(['work', '--log-level', 'WARN', '--log-format', 'json'], { from: 'user' });
    expect(b).toEqual({ level: 'warn', format: 'json' });
  });

  it('names the bad level and the accepted ones', () => {
    expect(() => parseLogLevel('loud')).toThrow(
      'log level "loud" is invalid: expected one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it('reaches the real CLI: a bad level is a usage error, exit code 1', () => {
    const r = spawnSync(process.execPath, [bin, 'dashboard', '.', '--log-level', 'loud'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('log level "loud" is invalid');
  });
});

describe('examples()', () => {
  it('formats commands with a prompt and comments without', () => {
    expect(examples('# hello', 'zeroring x')).toBe('\nExamples:\n  # hello\n  $ zeroring x\n');
  });
});
