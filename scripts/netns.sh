#!/usr/bin/env bash
# Several "hosts" on one machine for the multi-node tests: N network namespaces, each with one
# interface eth0 (10.213.0.{1..N}/24), plugged into a bridge that lives in a switch namespace of
# its own. Everything is created inside namespaces this script makes, so nothing touches the
# machine's own network; traffic only flows between these namespaces.
#
#   scripts/netns.sh up      ID N          create zr-ID-sw and zr-ID-n0 .. zr-ID-n{N-1}
#   scripts/netns.sh cut     ID I          set node I's switch port down (a silent partition)
#   scripts/netns.sh mend    ID I          set it up again
#   scripts/netns.sh shape   ID I PROFILE  give node I's link a profile (below), both directions
#   scripts/netns.sh unshape ID I          back to the plain veth link (idempotent)
#   scripts/netns.sh drops   ID I          packets the profile's loss has dropped on node I's link
#   scripts/netns.sh build                 compile the shaping helpers (shape does it when needed)
#   scripts/netns.sh down    ID N          kill whatever still runs in them and delete them (idempotent)
#
# Link profiles (rate, one-way delay, loss, each on both directions of node I's link):
#   10g       10 Gbit/s   0.1 ms
#   1g         1 Gbit/s   0.5 ms
#   wan      100 Mbit/s    20 ms
#   wan-loss 100 Mbit/s    20 ms   0.1 % of packets
# A path between two shaped nodes crosses both links: the delays add up (two wan nodes are 80 ms
# apart, round trip), the lower rate holds. Mechanisms, printed by `shape` one line per property
# ("rate: 100mbit by tbf ..."):
#   rate   tbf, the root qdisc of eth0 (the node's egress) and of its switch port (egress toward it).
#   delay  zr-delay (scripts/netns/delay.c), a userspace NFQUEUE relay in the switch namespace:
#          the bridge's iptables (physdev match on node I's port) queue what comes from the node
#          and what goes to it, the relay holds each packet for the delay. This kernel has neither
#          netem nor fq, so the EDT method (BPF stamps skb->tstamp, fq waits for it) has nothing to
#          wait in.
#   loss   a tc BPF program (scripts/netns/loss.bpf.c, clsact ingress and egress of node I's switch
#          port) drops a packet with the profile's probability; where BPF cannot be built or loaded
#          (or ZR_NETNS_LOSS=iptables), iptables' statistic match drops it (switch FORWARD chain,
#          one rule per length band so that a GSO packet counts as the wire packets it carries).
# Delay and loss act in the switch, past the sender's socket: a packet held or dropped on its
# sender's own egress still counts against that socket (TCP Small Queues, local drop).
# The helpers are compiled (cc or clang, libbpf-dev) into scripts/netns/build/, never committed;
# scripts/setup.sh installs the packages (clang, libbpf-dev, iptables) and runs `build`.
#
# ID is a short unique tag per test run (interface names are limited to 15 characters).
# Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/netns"
out="$src/build"
run=/run/zr-netns
cmd=${1:?usage: netns.sh up|cut|mend|shape|unshape|drops|build|down ID N|I [PROFILE]}

# Compiles the relay unless it is newer than its source. Each build lands under a temporary name
# and is renamed: concurrent builds never see half a file.
build_delay() {
  mkdir -p "$out"
  if [ ! -x "$out/zr-delay" ] || [ "$src/delay.c" -nt "$out/zr-delay" ]; then
    local compiler=cc
    command -v cc >/dev/null 2>&1 || compiler=clang
    "$compiler" -O2 -Wall -o "$out/zr-delay.$$" "$src/delay.c"
    mv -f "$out/zr-delay.$$" "$out/zr-delay"
  fi
}

# The loss program for $1 ppm; fails (and shape falls back to iptables) where clang or the libbpf
# headers are missing.
build_loss() {
  local obj="$out/loss-$1.o"
  mkdir -p "$out"
  if [ ! -f "$obj" ] || [ "$src/loss.bpf.c" -nt "$obj" ]; then
    clang -O2 -Wall -target bpf -DLOSS_PPM="$1" -I"/usr/include/$(uname -m)-linux-gnu" \
      -c "$src/loss.bpf.c" -o "$obj.$$" || { rm -f "$obj.$$"; return 1; }
    mv -f "$obj.$$" "$obj"
  fi
}

if [ "$cmd" = build ]; then
  build_delay
  build_loss 1000
  echo "netns.sh: built $out/zr-delay and $out/loss-1000.o"
  exit 0
fi

id=${2:?missing ID}
sw="zr-$id-sw"

# iptables-legacy where there is one (the kernel's own tables, no nft translation), else iptables.
# Always with -w: the xtables lock is one per machine, and other tests shape their links too.
ipt=iptables
command -v iptables-legacy >/dev/null 2>&1 && ipt=iptables-legacy

# Undoes shape (each part may be absent). The queue rules go first, so that the relay, on SIGTERM,
# lets through what it still holds and nothing more is queued to a socket that is gone.
unshape() {
  local i=$1 ns="zr-$id-n$1" port="p$id$1" pidfile="$run/$id-$1.pid"
  if command -v "$ipt" >/dev/null 2>&1; then
    for spec in "mangle PREROUTING pre" "mangle POSTROUTING post" "filter FORWARD fwd"; do
      set -- $spec
      ip netns exec "$sw" "$ipt" -w -t "$1" -D "$2" -j "zr-link-$i-$3" 2>/dev/null || true
      ip netns exec "$sw" "$ipt" -w -t "$1" -F "zr-link-$i-$3" 2>/dev/null || true
      ip netns exec "$sw" "$ipt" -w -t "$1" -X "zr-link-$i-$3" 2>/dev/null || true
    done
  fi
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
  tc -n "$sw" qdisc del dev "$port" root 2>/dev/null || true
  tc -n "$sw" qdisc del dev "$port" clsact 2>/dev/null || true
}

# A chain of ours (in the switch namespace) per hook and node, so unshape removes exactly what
# shape added. The switch's bridge passes IPv4 through iptables (bridge-nf-call-iptables), and
# the physdev match names node I's port.
ipt_chain() {
  local table=$1 hook=$2 chain=$3 rule=$4
  ip netns exec "$sw" "$ipt" -w -t "$table" -N "$chain"
  ip netns exec "$sw" "$ipt" -w -t "$table" -A "$chain" $rule
  ip netns exec "$sw" "$ipt" -w -t "$table" -A "$hook" -j "$chain"
}

shape() {
  local i=$1 profile=$2 ns="zr-$id-n$1" port="p$id$1"
  local rate delay_us loss_ppm
  case "$profile" in
    10g) rate=10gbit; delay_us=100; loss_ppm=0 ;;
    1g) rate=1gbit; delay_us=500; loss_ppm=0 ;;
    wan) rate=100mbit; delay_us=20000; loss_ppm=0 ;;
    wan-loss) rate=100mbit; delay_us=20000; loss_ppm=1000 ;;
    *) echo "netns.sh: unknown profile '$profile', expected 10g|1g|wan|wan-loss" >&2; exit 2 ;;
  esac
  ip netns pids "$ns" >/dev/null 2>&1 || { echo "netns.sh: no namespace $ns (run up first)" >&2; exit 2; }
  command -v "$ipt" >/dev/null 2>&1 || { echo "netns.sh: shape needs iptables (scripts/setup.sh)" >&2; exit 2; }
  unshape "$i"
  build_delay

  # Rate. The bucket holds 2 ms of the rate and at least 128 KiB (a 64 KiB GSO packet passes
  # whole); the queue behind it holds max(10 ms, twice the delay) of the rate, a router's buffer.
  local bps burst lat_ms
  case "$rate" in *gbit) bps=$(( ${rate%gbit} * 1000000000 )) ;; *mbit) bps=$(( ${rate%mbit} * 1000000 )) ;; esac
  burst=$(( bps / 8 / 500 )); (( burst < 131072 )) && burst=131072
  lat_ms=$(( delay_us * 2 / 1000 )); (( lat_ms < 10 )) && lat_ms=10
  tc -n "$ns" qdisc add dev eth0 root handle 1: tbf rate "$rate" burst "$burst" latency "${lat_ms}ms"
  tc -n "$sw" qdisc add dev "$port" root handle 1: tbf rate "$rate" burst "$burst" latency "${lat_ms}ms"
  echo "rate: $rate by tbf (root qdisc of $ns eth0 and of switch port $port; burst $burst B, queue ${lat_ms} ms)"

  # Delay: queue 2I holds what node I sends, 2I+1 what is sent to it. The relay first, the rules
  # once its queues are bound (a rule with no listener drops).
  mkdir -p "$run"
  ip netns exec "$sw" sysctl -qw net.bridge.bridge-nf-call-iptables=1
  local pidfile="$run/$id-$i.pid" qin=$(( 2 * i )) qout=$(( 2 * i + 1 ))
  ip netns exec "$sw" setsid "$out/zr-delay" "$pidfile" "$qin:$delay_us" "$qout:$delay_us" \
    </dev/null >"$run/$id-$i.log" 2>&1 &
  for _ in $(seq 250); do [ -f "$pidfile" ] && break; sleep 0.02; done
  if [ ! -f "$pidfile" ]; then
    echo "netns.sh: the delay relay did not start: $(cat "$run/$id-$i.log")" >&2
    unshape "$i"
    exit 1
  fi
  ipt_chain mangle PREROUTING "zr-link-$i-pre" "-m physdev --physdev-in $port -j NFQUEUE --queue-num $qin"
  ipt_chain mangle POSTROUTING "zr-link-$i-post" \
    "-m physdev --physdev-out $port --physdev-is-bridged -j NFQUEUE --queue-num $qout"
  echo "delay: ${delay_us}us by nfqueue (zr-delay pid $(cat "$pidfile") in $sw holds what crosses port $port)"

  # Loss.
  if (( loss_ppm == 0 )); then
    echo "loss: 0 by none"
    return
  fi
  local obj="$out/loss-$loss_ppm.o" how=bpf
  # On the switch port, not on the node's eth0: a packet dropped on its sender's own egress comes
  # back to TCP as a local failure and is sent again, no loss seen on the wire.
  if [ "${ZR_NETNS_LOSS:-bpf}" = iptables ] || ! build_loss "$loss_ppm" 2>"$run/$id-$i.clang.log" ||
    ! tc -n "$sw" qdisc add dev "$port" clsact 2>/dev/null ||
    ! tc -n "$sw" filter add dev "$port" ingress bpf da obj "$obj" sec tc 2>/dev/null ||
    ! tc -n "$sw" filter add dev "$port" egress bpf da obj "$obj" sec tc 2>/dev/null; then
    tc -n "$sw" qdisc del dev "$port" clsact 2>/dev/null || true
    how=iptables
  fi
  local pct
  pct=$(awk "BEGIN { print $loss_ppm / 10000 }")
  if [ "$how" = bpf ]; then
    echo "loss: ${pct}% by bpf (loss.bpf.c on clsact ingress and egress of switch port $port)"
  else
    # A GSO packet of n wire packets should be lost with n times the probability, as in the BPF
    # program; iptables sees only its length, so one rule per length band: up to 1500 bytes p,
    # then bands (1500 * 2^(k-1), 1500 * 2^k] with p * 0.75 * 2^k (their mean wire packets). A
    # packet matches one band, once from the node (physdev-in) or once to it (physdev-out).
    ip netns exec "$sw" "$ipt" -w -N "zr-link-$i-fwd"
    local dir lo hi k p
    for dir in "--physdev-in $port" "--physdev-out $port --physdev-is-bridged"; do
      lo=0; hi=1500
      for k in 0 1 2 3 4 5 6; do
        p=$(awk "BEGIN { m = $k == 0 ? 1 : 0.75 * 2 ^ $k; p = $loss_ppm / 1000000 * m; print (p > 1 ? 1 : p) }")
        ip netns exec "$sw" "$ipt" -w -A "zr-link-$i-fwd" -m physdev $dir -m length --length "$lo:$hi" \
          -m statistic --mode random --probability "$p" -j DROP
        lo=$(( hi + 1 )); hi=$(( hi * 2 )); (( hi > 65535 )) && hi=65535
        (( lo > 65535 )) && break
      done
    done
    ip netns exec "$sw" "$ipt" -w -A FORWARD -j "zr-link-$i-fwd"
    echo "loss: ${pct}% by iptables (statistic match in $sw FORWARD, packets from and to port $port)"
  fi
}

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
  shape) shape "${3:?missing I}" "${4:?missing PROFILE (10g|1g|wan|wan-loss)}" ;;
  unshape) unshape "${3:?missing I}" ;;
  drops)
    # What the loss dropped: the BPF program's shots (the clsact qdisc counts them) plus the
    # statistic rules' packets; 0 for a link without loss.
    i=${3:?missing I}
    n=0
    for d in $(tc -n "$sw" -s qdisc show dev "p$id$i" 2>/dev/null |
      awk '/^qdisc clsact/ { c = 1; next } c && /dropped/ { sub(",", "", $7); print $7; c = 0 }'); do
      n=$(( n + d ))
    done
    for d in $(ip netns exec "$sw" "$ipt" -w -t filter -L "zr-link-$i-fwd" -v -n -x 2>/dev/null |
      awk '$3 == "DROP" { print $1 }'); do
      n=$(( n + d ))
    done
    echo "$n"
    ;;
  down)
    n=${3:?missing N}
    # The delay relays run in the switch namespace.
    if ip netns pids "$sw" >/dev/null 2>&1; then
      for pid in $(ip netns pids "$sw"); do kill -9 "$pid" 2>/dev/null || true; done
    fi
    rm -f "$run/$id-"*
    for ((i = 0; i < n; i++)); do
      ns="zr-$id-n$i"
      if ip netns pids "$ns" >/dev/null 2>&1; then
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
      fi
    done
    ip netns del "$sw" 2>/dev/null || true
    ;;
  *)
    echo "netns.sh: unknown command '$cmd', expected up|cut|mend|shape|unshape|drops|build|down" >&2
    exit 2
    ;;
esac
