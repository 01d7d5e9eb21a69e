#!/usr/bin/env node
// The zeroring command runs the built JavaScript (dist/, made by `pnpm build`, which the setup
// script and `pnpm test` run): what an installed package runs, and what the tests measure.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('zeroring: the packages are not built; run `pnpm build` (bash scripts/setup.sh does it)\n');
  process.exit(1);
}
await import(main.href);
