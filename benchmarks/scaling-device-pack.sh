#!/usr/bin/env bash
# Packs the training scaling benchmark (benchmarks/scaling.ts + scaling-worker.ts) for a machine
# with no Node and no node_modules — the accelerator machine, used here for its 16 idle CPU
# cores: a clean 1/2/4-rank CPU (wasm) measurement where this 2-core machine is shared.
# Needs .device-pack/node.xz from benchmarks/backend-device-pack.sh. Output: .device-pack-scaling/
# (git-ignored through .git/info/exclude), ~30 MB.
#
#   bash benchmarks/scaling-device-pack.sh
#   then on the device, carrying .device-pack-scaling:   bash .device-pack-scaling/run.sh [ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.device-pack-scaling
[ -f .device-pack/node.xz ] || { echo "run benchmarks/backend-device-pack.sh first (needs .device-pack/node.xz)" >&2; exit 1; }
mkdir -p "$PACK"
grep -qx '/.device-pack-scaling/' .git/info/exclude 2>/dev/null || echo '/.device-pack-scaling/' >> .git/info/exclude
cp .device-pack/node.xz "$PACK/node.xz"

ESBUILD="$(node -e "console.log(require.resolve('esbuild/bin/esbuild', { paths: [require.resolve('tsx')] }))" 2>/dev/null \
  || ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)"
CORE="$(cd packages/backend && node -e "console.log(require('path').dirname(require.resolve('@tensorflow/tfjs-core/package.json')))")"
WASM="$(cd packages/backend && node -e "console.log(require('path').dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')))")"
# Emscripten finds its .wasm beside __dirname; an ES-module bundle defines it in the banner.
BANNER="import { createRequire as __cr } from 'node:module'; import { fileURLToPath as __fu } from 'node:url'; import { dirname as __dn } from 'node:path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
cat > "$PACK/worker-entry.ts" <<'TS'
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '../benchmarks/scaling-worker.ts';
TS
for pair in "worker-entry.ts:worker.mjs" "../benchmarks/scaling.ts:scaling.mjs"; do
  "$ESBUILD" "$PACK/${pair%%:*}" --bundle --platform=node --format=esm --target=node20 \
    --main-fields=module,main --outfile="$PACK/${pair##*:}" --log-level=error \
    --external:'*.node' --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
    --external:bufferutil --external:utf-8-validate --external:msgpackr-extract --external:webgpu \
    --banner:js="$BANNER" --alias:@tensorflow/tfjs-core="$CORE"
done
# @zeroring/backend finds the .wasm files through require.resolve of the package: give it a
# stub package (its "main" beside the binaries) where the bundle's require looks.
STUB="$PACK/node_modules/@tensorflow/tfjs-backend-wasm"
mkdir -p "$STUB/dist"
echo '{ "name": "@tensorflow/tfjs-backend-wasm", "main": "dist/index.js" }' > "$STUB/package.json"
echo '// stub: only its directory is used, to find the .wasm files' > "$STUB/dist/index.js"
cp "$WASM"/dist/*.wasm "$STUB/dist/"
node --import tsx -e "import('./packages/gpt/src/corpus.ts').then((m) => require('node:fs').writeFileSync('$PACK/moby.txt', m.mobyDick()))"

cat > "$PACK/run.sh" <<'SH'
#!/usr/bin/env bash
# On the device, from the repository root, with .device-pack-scaling carried. Extra arguments go
# to benchmarks/scaling.ts; results land in $OUT (or /tmp).
set -uo pipefail
P=.device-pack-scaling
[ -x /tmp/node ] || { xz -d -c $P/node.xz > /tmp/node && chmod +x /tmp/node; }
nproc
/tmp/node $P/scaling.mjs --worker "$PWD/$P/worker.mjs" --data "$PWD/$P/moby.txt" --no-charts --no-cpu-balance --out "${OUT:-/tmp}/scaling.json" "$@"
SH
chmod +x "$PACK/run.sh"
du -sh "$PACK" && ls -la "$PACK"
