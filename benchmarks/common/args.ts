// Command-line options for the benchmark scripts: node:util's parseArgs (strict, so a mistyped
// option is an error rather than silently ignored) plus `--help`, which prints the script's own
// header comment (every script documents its options there) and exits before anything runs:
// several benchmarks take minutes and overwrite their results file.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
/** What node:util's parseArgs gives for these options, typed per option. */
type Values<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true }>>['values'];

/** The leading `//` comment block of a script, without the comment markers. */
export function scriptUsage(scriptUrl: string): string {
  const lines = readFileSync(fileURLToPath(scriptUrl), 'utf8').split('\n');
  const header: string[] = [];
  for (const line of lines) {
    if (!line.startsWith('//')) break;
    header.push(line.replace(/^\/\/ ?/, ''));
  }
  return header.join('\n');
}

/**
 * Parses `process.argv` for the benchmark at `scriptUrl` (pass `import.meta.url`). `--help`
 * prints its usage and exits 0; an unknown or malformed option prints the error and the usage
 * and exits 2, as argument parsers do.
 */
export function benchArgs<const O extends Options>(
  scriptUrl: string,
  options: O,
  argv = process.argv.slice(2),
): Values<O> {
  let values: Values<O>;
  try {
    const help = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } }, strict: false }).values
      .help;
    if (help === true) {
      process.stdout.write(`${scriptUsage(scriptUrl)}\n`);
      process.exit(0);
    }
    values = parseArgs({ args: argv, options, strict: true }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${scriptUsage(scriptUrl)}\n`);
    process.exit(2);
  }
  return values;
}
