#!/usr/bin/env bash
# Packs what benchmarks/gpu needs on a bare GPU machine (no Node, no node_modules, no network)
# into .device/gpu/, which .gitignore already ignores: the built CLI and its train worker as
# single-file bundles (so `--nproc 2` finds its worker beside the command, as in dist/), the
# benchmark itself as a bundle, Moby Dick as a text file (the corpus package is loaded by a
# require() that a bundle cannot follow), Node and Dawn compressed, and the Vulkan loader's
# Debian packages. node_modules itself is hundreds of MB, far over what a borrowed machine takes
# with the working tree (64 MiB); this folder is about 35 MB. Run it here, from anywhere:
#
#   bash benchmarks/gpu/pack.sh
#
# then carry .device on the GPU machine and run benchmarks/gpu/device-run.sh there.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=.device/gpu
pnpm build >/dev/null
ESBUILD=$(node -p "require.resolve('esbuild/bin/esbuild', { paths: [require.resolve('tsx')] })")
pkg() { (cd packages/backend && node -p "require('path').dirname(require.resolve('$1/package.json'))"); }
mkdir -p "$D/bin" "$D/gl"

# One bundle per entry. Gradients and chained ops are imported statically: a bundle has no
# node_modules to load them from at run time. One tfjs-core for every tfjs package.
bundle() {
  local entry=$1 out=$2 name
  name=$(basename "$out" .mjs)
  printf '%s\n' "import '@tensorflow/tfjs-core/dist/register_all_gradients';" \
    "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';" \
    "import '../../$entry';" >"$D/entry-$name.ts"
  "$ESBUILD" "$D/entry-$name.ts" --bundle --platform=node --format=esm --target=node20 \
    --main-fields=module,main --outfile="$out" --log-level=warning \
    --external:'*.node' --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
    --alias:@tensorflow/tfjs-core="$(pkg @tensorflow/tfjs-core)"
  rm "$D/entry-$name.ts"
}
bundle packages/cli/dist/main.js "$D/bin/zeroring.mjs"
bundle packages/cli/dist/train-worker.js "$D/train-worker.mjs" # ../train-worker.mjs of bin/zeroring.mjs
bundle benchmarks/gpu/main.ts "$D/gpu.mjs"

node --input-type=module -e "
  import { writeFileSync } from 'node:fs';
  import { mobyDick } from '@zeroring/gpt';
  writeFileSync('$D/moby-dick.txt', mobyDick());
"
[ -s "$D/dawn.node.xz" ] || xz -T2 -6 -c "$(pkg webgpu)/dist/linux-x64/dawn.node" >"$D/dawn.node.xz"
[ -s "$D/node.xz" ] || xz -T2 -3 -c "$(readlink -f "$(command -v node)")" >"$D/node.xz"
if ! ls "$D"/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd "$D/gl" && apt-get download libvulkan1 libglvnd0 libegl1 libopengl0 libgl1 libglx0 libgles2) ||
    echo "pack: could not download the Vulkan loader packages; the GPU machine must have libvulkan1" >&2
fi
du -sh "$D"
