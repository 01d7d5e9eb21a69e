#!/usr/bin/env bash
# One-time machine setup for a fresh clone (idempotent): pnpm, the system packages the WebGPU
# tests (Mesa lavapipe), the browser test (Chromium), the network-namespace tests (iproute2, and
# clang, libbpf-dev and iptables for the link profiles) and the Slurm test (slurm-wlm 22.05,
# munge) need, the npm dependencies, and the build.
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
  # The link profiles of scripts/netns.sh (tests/netns-links.test.ts): iptables queues packets to
  # the delay relay, clang and libbpf-dev compile the loss program, cc (or clang) the relay.
  if ! command -v clang >/dev/null 2>&1 || ! [ -f /usr/include/bpf/bpf_helpers.h ] ||
    ! command -v iptables >/dev/null 2>&1; then
    echo "setup: installing clang, libbpf-dev, iptables"
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      clang libbpf-dev iptables >/dev/null
  fi
  bash scripts/netns.sh build
  # Slurm's daemons and clients and munge: tests/slurm-sbatch.test.ts runs examples/slurm on a
  # one-node cluster it starts itself. Only the packages: their services are not started here
  # (the test starts its own, with its own configuration).
  if ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 ||
    ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/slurmd ]; then
    echo "setup: installing slurmd, slurmctld, slurm-client, munge"
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    # Their postinst scripts would start system services (slurmd fails without /etc/slurm and
    # fails the install): a policy-rc.d that says no, unless the machine already has one.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod 755 /usr/sbin/policy-rc.d
      made_policy=1
    fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmd slurmctld slurm-client munge >/dev/null
    if [ "$made_policy" = "1" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  fi
fi

pnpm install --frozen-lockfile
# The packages run as built JavaScript (dist/), as they would installed from npm.
pnpm build
