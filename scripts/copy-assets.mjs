// Second half of `pnpm build`: tsc compiles each package's TypeScript into dist/; the files it
// does not compile (plain .mjs worker entries, the dashboard's page and styles) are copied there
// beside the modules that load them by relative URL.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const packages = fileURLToPath(new URL('../packages/', import.meta.url));

function copyAssets(src, dist) {
  for (const name of readdirSync(src)) {
    const from = join(src, name);
    if (statSync(from).isDirectory()) copyAssets(from, join(dist, name));
    else if (!name.endsWith('.ts')) cpSync(from, join(dist, name));
  }
}

for (const pkg of readdirSync(packages)) {
  const src = join(packages, pkg, 'src');
  if (statSync(src, { throwIfNoEntry: false })?.isDirectory()) copyAssets(src, join(packages, pkg, 'dist'));
}
console.log(`build: assets copied into ${relative(process.cwd(), packages)}/*/dist`);
