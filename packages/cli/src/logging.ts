// `--log-level` / `--log-format` for every command. The logger (packages/comm/src/logger.ts)
// reads ZERORING_LOG_LEVEL and ZERORING_LOG_FORMAT; setting them here, before any command's
// action runs, covers this process and every worker it spawns (workers inherit the environment).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { setLogLevel } from '@zeroring/core';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export class LogLevelError extends Error {
  override name = 'LogLevelError';
}

export function parseLogLevel(value: string): LogLevel {
  const v = value.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new LogLevelError(`log level ${JSON.stringify(value)} is invalid: expected one of ${LOG_LEVELS.join(', ')}`);
  }
  return v as LogLevel;
}

/** Wraps a parser so commander reports its error as a usage error instead of a stack trace. */
export function cliParser<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** Applies the options to this process and (via the environment) to workers started later. */
export function applyLogOptions(opts: { logLevel?: LogLevel; logFormat?: LogFormat }): void {
  if (opts.logLevel) setLogLevel(opts.logLevel);
  if (opts.logFormat) process.env.ZERORING_LOG_FORMAT = opts.logFormat;
}

export function parseLogFormat(value: string): LogFormat {
  const v = value.toLowerCase();
  if (!(LOG_FORMATS as readonly string[]).includes(v)) {
    throw new LogLevelError(
      `log format ${JSON.stringify(value)} is invalid: expected one of ${LOG_FORMATS.join(', ')}`,
    );
  }
  return v as LogFormat;
}

function logOptions(): Option[] {
  // The accepted values go in the flag's text, not commander's `choices` list: it is one line
  // under every command's help instead of four.
  return [
    new Option('--log-level <level>', `${LOG_LEVELS.join('|')}, here and in workers`).argParser(
      cliParser(parseLogLevel),
    ),
    new Option('--log-format <format>', `${LOG_FORMATS.join('|')} (default: pretty on a terminal)`).argParser(
      cliParser(parseLogFormat),
    ),
  ];
}

/**
 * Adds --log-level and --log-format to the program and to every command registered so far (call
 * it after registering commands), so both `zeroring --log-level debug train` and
 * `zeroring train --log-level debug` work; commander only sees a program option before the
 * subcommand name.
 */
export function addLoggingOptions(program: Command): Command {
  const visit = (cmd: Command) => {
    for (const opt of logOptions()) cmd.addOption(opt);
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
  program.hook('preAction', (_program, actionCommand) => {
    applyLogOptions(actionCommand.optsWithGlobals());
  });
  return program;
}
