#!/usr/bin/env bash
# Several "hosts" on one machine for the multi-node tests: N network namespaces, each with one
# interface eth0 (10.213.0.{1..N}/24), plugged into a bridge that lives in a switch namespace of
# its own. Everything is created inside namespaces this script makes, so nothing touches the
# machine's own network; traffic only flows between these namespaces.
#
#   scripts/netns.sh up   ID N     create zr-ID-sw and zr-ID-n0 .. zr-ID-n{N-1}
#   scripts/netns.sh cut  ID I     set node I's switch port down (a silent partition)
#   scripts/netns.sh mend ID I     set it up again
#   scripts/netns.sh down ID N     kill whatever still runs in them and delete them (idempotent)
#
# ID is a short unique tag per test run (interface names are limited to 15 characters).
# Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2.
set -euo pipefail
cmd=${1:?usage: netns.sh up|cut|mend|down ID N|I}
id=${2:?missing ID}
sw="zr-$id-sw"

case "$cmd" in
  up)
    n=${3:?missing N}
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for ((i = 0; i < n; i++)); do
      ns="zr-$id-n$i"
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      # Created in the node namespace, the switch end is then moved to the switch namespace.
      ip -n "$ns" link add eth0 type veth peer name "p$id$i" netns "$sw"
      ip -n "$ns" addr add "10.213.0.$((i + 1))/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$sw" link set "p$id$i" master br0
      ip -n "$sw" link set "p$id$i" up
    done
    ;;
  cut) ip -n "$sw" link set "p$id${3:?missing I}" down ;;
  mend) ip -n "$sw" link set "p$id${3:?missing I}" up ;;
  down)
    n=${3:?missing N}
    for ((i = 0; i < n; i++)); do
      ns="zr-$id-n$i"
      if ip netns pids "$ns" >/dev/null 2>&1; then
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
      fi
    done
    ip netns del "$sw" 2>/dev/null || true
    ;;
  *) echo "netns.sh: unknown command '$cmd', expected up|cut|mend|down" >&2; exit 2 ;;
esac
