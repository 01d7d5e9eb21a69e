#!/usr/bin/env bash
# One-time machine setup for a fresh clone (idempotent): pnpm, the system packages the WebGPU
# tests (Mesa lavapipe) and the browser test (Chromium) need, the npm dependencies, and the build.
# Run as root (or with sudo available) on Debian 12; on other systems install the equivalents.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1; then
  echo "setup: installing pnpm"
  npm install -g pnpm@12.4.2 >/dev/null
fi

if [ "${ZERORING_SKIP_SYSTEM_SETUP:-0}" != "1" ]; then
  bash scripts/setup-webgpu-cpu.sh
  bash scripts/setup-browser.sh
  # iproute2 (`ip netns`, `ss`): the multi-node tests run nodes in network namespaces.
  if ! command -v ip >/dev/null 2>&1 || ! command -v ss >/dev/null 2>&1; then
    echo "setup: installing iproute2"
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq iproute2 >/dev/null
  fi
fi

pnpm install --frozen-lockfile
# The packages run as built JavaScript (dist/), as they would installed from npm.
pnpm build
