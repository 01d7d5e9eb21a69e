#!/usr/bin/env bash
# Packs benchmarks/backend-device-check.ts to run on a GPU machine that has no Node, no
# node_modules and no network: Node itself (xz), one esbuild bundle (tfjs-core, the WebGPU
# backend, @zeroring/backend) and Dawn's linux-x64 dawn.node beside it, where the bundled
# `webgpu` package looks for it, plus the Vulkan loader .debs. About 35 MB, under the device
# tool's 64 MiB carry limit. Output: .device-pack/ (git-ignored through .git/info/exclude).
#
#   bash benchmarks/backend-device-pack.sh
#   then on the device, carrying .device-pack:
#   bash .device-pack/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.device-pack
mkdir -p "$PACK/gl"
grep -qx '/.device-pack/' .git/info/exclude 2>/dev/null || echo '/.device-pack/' >> .git/info/exclude

ESBUILD="$(node -e "console.log(require.resolve('esbuild/bin/esbuild', { paths: [require.resolve('tsx')] }))" 2>/dev/null \
  || ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)"
BACKEND_DIR=packages/backend

# Gradients and chained ops are imported statically first: inside the bundle there is no
# node_modules for registerAllGradients to load them from. "module" first in mainFields so
# every tfjs package shares tfjs-core's one ES-module copy.
cat > "$PACK/entry.ts" <<'TS'
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '../benchmarks/backend-device-check.ts';
TS
"$ESBUILD" "$PACK/entry.ts" --bundle --platform=node --format=esm --target=node20 \
  --main-fields=module,main --outfile="$PACK/check.mjs" --log-level=warning \
  --external:'*.node' --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
  --alias:@tensorflow/tfjs-core="$(cd $BACKEND_DIR && node -e "console.log(require('path').dirname(require.resolve('@tensorflow/tfjs-core/package.json')))")"

WEBGPU_DIR="$(cd $BACKEND_DIR && node -e "console.log(require('path').dirname(require.resolve('webgpu/package.json')))")"
[ -f "$PACK/dawn.node.xz" ] || xz -T2 -6 -c "$WEBGPU_DIR/dist/linux-x64/dawn.node" > "$PACK/dawn.node.xz"
[ -f "$PACK/node.xz" ] || xz -T2 -3 -c "$(readlink -f "$(command -v node)")" > "$PACK/node.xz"

# The Vulkan loader (and GL dispatch) for the device, which may lack them; its NVIDIA driver
# provides the ICD. Debian's packages, downloaded (not installed) here.
if ! ls "$PACK"/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd "$PACK/gl" && apt-get download libvulkan1 libglvnd0 libegl1 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi

cat > "$PACK/run.sh" <<'SH'
#!/usr/bin/env bash
# Runs on the device machine from the repository root, with .device-pack carried.
set -uo pipefail
P=.device-pack
# The Vulkan loader and glvnd (the NVIDIA ICD, libGLX_nvidia, needs libGLdispatch).
for f in $P/gl/*.deb; do dpkg -x "$f" /; done
ldconfig
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$ICD
fi
xz -d -c $P/node.xz > /tmp/node && chmod +x /tmp/node
mkdir -p $P/dist/linux-x64 && xz -d -c $P/dawn.node.xz > $P/dist/linux-x64/dawn.node
nvidia-smi -L || true
/tmp/node $P/check.mjs
SH
chmod +x "$PACK/run.sh"
du -sh "$PACK" && ls -la "$PACK"
