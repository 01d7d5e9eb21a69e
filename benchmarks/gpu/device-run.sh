#!/usr/bin/env bash
# Runs the GPU benchmark (benchmarks/gpu/main.ts) on a GPU machine with one command, from the
# repository root or anywhere inside it:
#
#   bash benchmarks/gpu/device-run.sh [main.ts's options, e.g. --models tiny,small --time-limit 200]
#
# Two kinds of machine:
# - with the repository installed (Node 20+, node_modules, `pnpm build` done): runs the sources
#   through tsx and the built CLI, as `node --import tsx benchmarks/gpu/main.ts` would;
# - bare (no Node, no node_modules, no network), with .device/gpu carried from a machine that ran
#   benchmarks/gpu/pack.sh: unpacks Node, Dawn and the Vulkan loader, then runs the bundles.
# Writes gpu-<machine>.json and .md (and the log) into $OUT when set, else benchmarks/results/.
# The benchmark keeps itself inside --time-limit (default 270 s) and kills runs past it; the
# `timeout` below is the last resort if Dawn or the driver hangs outside a run.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT:-benchmarks/results}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu-log.txt"
D=.device/gpu

if [ -d node_modules ] && [ -f packages/cli/dist/main.js ] && command -v node >/dev/null; then
  set -- node --import tsx benchmarks/gpu/main.ts --out-dir "$OUT_DIR" "$@"
elif [ -f "$D/gpu.mjs" ]; then
  # The Vulkan loader and glvnd, where the machine lacks them (dpkg -x unpacks, runs nothing).
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$D"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json # where the loader may not look
  [ -f "$ICD" ] && export VK_DRIVER_FILES=$ICD
  NODE=/tmp/zeroring-node
  [ -x "$NODE" ] || { xz -d -c "$D/node.xz" >"$NODE" && chmod +x "$NODE"; }
  # The bundled `webgpu` module looks for Dawn beside the bundle that imports it.
  mkdir -p "$D/dist/linux-x64" "$D/bin/dist/linux-x64"
  [ -s "$D/dist/linux-x64/dawn.node" ] || xz -d -c "$D/dawn.node.xz" >"$D/dist/linux-x64/dawn.node"
  cp -f "$D/dist/linux-x64/dawn.node" "$D/bin/dist/linux-x64/dawn.node"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  set -- "$NODE" "$D/gpu.mjs" --cli "$D/bin/zeroring.mjs" --data "$D/moby-dick.txt" --out-dir "$OUT_DIR" "$@"
else
  echo "device-run: no node_modules and no $D; run 'bash benchmarks/gpu/pack.sh' and carry .device" >&2
  exit 2
fi
# The benchmark's own --time-limit (default 270 s) plus a minute for start-up and the reports.
LIMIT=270
for ((i = 1; i < $#; i++)); do [ "${!i}" = --time-limit ] && { j=$((i + 1)); LIMIT=${!j}; }; done
timeout -k 10 "$((${LIMIT%.*} + 60))" "$@" 2>&1 | grep -v 'artificially reduced' | tee "$LOG"
