// Help text shared by every command: `cmd.addHelpText('after', examples('zeroring x ...', ...))`.
// Lines starting with '#' are comments explaining the example below them.
export function examples(...lines: string[]): string {
  const body = lines.map((l) => (l.startsWith('#') ? `  ${l}` : `  $ ${l}`)).join('\n');
  return `\nExamples:\n${body}\n`;
}
