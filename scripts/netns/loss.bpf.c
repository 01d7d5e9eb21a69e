// The random loss of scripts/netns.sh's lossy link profiles: a tc BPF program (clsact, direct
// action) that drops a packet with probability LOSS_PPM per million. netns.sh puts it on both
// directions of node I's switch port (ingress: from the node, egress: to it), past the sender's
// socket, where a lossy wire drops. BPF rather than iptables' statistic match: no netfilter hook in
// the path, and the probability counts wire packets. A GSO super-packet carries gso_segs of them
// and is dropped whole with gso_segs times the probability, so the expected share of wire packets
// lost is still LOSS_PPM (netem and the statistic match drop such a packet with the plain
// probability, losing fewer wire packets than they say).
// LOSS_PPM is a compile-time constant (-DLOSS_PPM=1000): tc's loader cannot set program data, and
// netns.sh builds one object per rate it is asked for.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#ifndef LOSS_PPM
#error "build with -DLOSS_PPM=N (packets lost per million)"
#endif

SEC("tc")
int zr_loss(struct __sk_buff *skb) {
  __u64 segs = skb->gso_segs ? skb->gso_segs : 1;
  if ((__u64)(bpf_get_prandom_u32() % 1000000) < (__u64)LOSS_PPM * segs) return TC_ACT_SHOT;
  return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
