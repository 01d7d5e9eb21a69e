#!/usr/bin/env bash
# Installs what the dashboard browser test needs: Debian's Chromium (driven by playwright-core,
# which never downloads a browser of its own) and a font so screenshots show text.
# Idempotent: does nothing when chromium is already there. Needs root (or sudo) and apt.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi dejavu; then
  echo "setup-browser: chromium already installed ($(chromium --version 2>/dev/null || echo unknown version))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup-browser: need root or sudo to apt-get install chromium" >&2; exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fontconfig >/dev/null
echo "setup-browser: installed $(chromium --version 2>/dev/null || echo chromium)"
