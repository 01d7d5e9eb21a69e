#!/usr/bin/env bash
# Installs what the WebGPU backend needs to run real shaders on a machine without a GPU:
# the Vulkan loader (libvulkan1) and Mesa's lavapipe software Vulkan driver
# (mesa-vulkan-drivers). Dawn (npm `webgpu`) needs Mesa >= 24; Debian 12's own Mesa 22
# lacks Vulkan features Dawn requires, so both come from bookworm-backports.
#
# Idempotent: does nothing when a new enough lavapipe is already installed. Run as root
# (CI runs it from .ci/run). On a non-Debian machine it explains and exits 0, so the WebGPU
# tests are then reported as skipped rather than failing the run.
set -euo pipefail

MIN_MESA_MAJOR=24
BACKPORTS_FILE=/etc/apt/sources.list.d/bookworm-backports.sources

log() { echo "setup-webgpu-cpu: $*" >&2; }

installed_mesa_major() {
  # Prints the installed major version of mesa-vulkan-drivers, or nothing.
  dpkg-query -W -f='${Status} ${Version}\n' mesa-vulkan-drivers 2>/dev/null \
    | awk '$3 == "installed" { split($4, v, /[.:]/); print (v[2] != "" && $4 ~ /:/) ? v[2] : v[1] }'
}

have_lavapipe() {
  local major
  major="$(installed_mesa_major)"
  [[ -n "$major" && "$major" -ge "$MIN_MESA_MAJOR" ]] \
    && dpkg-query -W -f='${Status}\n' libvulkan1 2>/dev/null | grep -q 'install ok installed' \
    && ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1
}

if have_lavapipe; then
  log "lavapipe (mesa-vulkan-drivers $(installed_mesa_major).x) and libvulkan1 already installed"
  exit 0
fi

if [[ ! -r /etc/os-release ]] || ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  log "not Debian 12 (bookworm): install libvulkan1 and Mesa >= ${MIN_MESA_MAJOR} lavapipe by hand;" \
      "until then the WebGPU tests are skipped"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root (it runs apt-get)" && exit 1
fi

# Add bookworm-backports only when no apt source already names it.
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding bookworm-backports apt source ($BACKPORTS_FILE)"
  cat > "$BACKPORTS_FILE" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second setup script) may hold the dpkg lock: wait for it rather than fail.
APT_OPTS=(-o DPkg::Lock::Timeout=600)
log "apt-get update"
apt-get "${APT_OPTS[@]}" update -qq
log "installing mesa-vulkan-drivers and libvulkan1 from bookworm-backports"
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends -t bookworm-backports \
  mesa-vulkan-drivers libvulkan1

if have_lavapipe; then
  log "done: lavapipe from mesa-vulkan-drivers $(installed_mesa_major).x"
else
  log "installed, but lavapipe >= ${MIN_MESA_MAJOR} is still not found" && exit 1
fi
