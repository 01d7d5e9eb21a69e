#!/usr/bin/env bash
# Packs benchmarks/engine-device-check.ts for a GPU machine with no Node and no node_modules:
# one esbuild bundle (tfjs-core, the WebGPU backend, @zeroring/backend, gpt, train) in
# .device-pack-engine/, next to the Node binary, Dawn and Vulkan loader that
# benchmarks/backend-device-pack.sh leaves in .device-pack/ (run that first; this reuses it).
#
#   bash benchmarks/backend-device-pack.sh && bash benchmarks/engine-device-pack.sh
#   then on the device, carrying .device-pack and .device-pack-engine:
#   bash .device-pack-engine/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.device-pack-engine
[ -f .device-pack/node.xz ] && [ -f .device-pack/dawn.node.xz ] || { echo "run benchmarks/backend-device-pack.sh first (needs .device-pack/node.xz, dawn.node.xz)" >&2; exit 1; }
mkdir -p "$PACK"
grep -qx '/.device-pack-engine/' .git/info/exclude 2>/dev/null || echo '/.device-pack-engine/' >> .git/info/exclude

ESBUILD="$(node -e "console.log(require.resolve('esbuild/bin/esbuild', { paths: [require.resolve('tsx')] }))" 2>/dev/null \
  || ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)"
# Gradients and chained ops imported statically: inside the bundle there is no node_modules
# for registerAllGradients to load them from; "module" first so all tfjs packages share one core.
cat > "$PACK/entry.ts" <<'TS'
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '../benchmarks/engine-device-check.ts';
TS
"$ESBUILD" "$PACK/entry.ts" --bundle --platform=node --format=esm --target=node20 \
  --main-fields=module,main --outfile="$PACK/check.mjs" --log-level=warning \
  --external:'*.node' --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
  --alias:@tensorflow/tfjs-core="$(cd packages/backend && node -e "console.log(require('path').dirname(require.resolve('@tensorflow/tfjs-core/package.json')))")"

cat > "$PACK/run.sh" <<'SH'
#!/usr/bin/env bash
# On the device, from the repository root, with .device-pack and .device-pack-engine carried.
set -uo pipefail
P=.device-pack
for f in $P/gl/*.deb; do dpkg -x "$f" /; done
ldconfig
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$ICD
fi
xz -d -c $P/node.xz > /tmp/node && chmod +x /tmp/node
# The bundled `webgpu` package looks for dist/linux-x64/dawn.node beside the bundle.
mkdir -p .device-pack-engine/dist/linux-x64 && xz -d -c $P/dawn.node.xz > .device-pack-engine/dist/linux-x64/dawn.node
nvidia-smi -L || true
/tmp/node .device-pack-engine/check.mjs webgpu
SH
chmod +x "$PACK/run.sh"
du -sh "$PACK" && ls -la "$PACK"
