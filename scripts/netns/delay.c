// zr-delay: the one-way delay of scripts/netns.sh's link profiles. It holds every IPv4 packet that
// iptables queues to it (NFQUEUE) for a fixed time, then lets it go on. Why a userspace relay: the
// kernels this project's tests run on have neither netem nor fq (nor etf), the qdiscs that can hold
// a packet until a time, so the EDT method (a tc BPF program sets skb->tstamp, fq waits for it) has
// nothing to wait in. Only the packet's id crosses to userspace (NFQNL_COPY_META) and GSO packets
// stay whole (NFQA_CFG_F_GSO), so a 64 KiB super-packet costs one message. Each queue is a FIFO with
// one delay, so packets leave in order: one batch verdict accepts every id up to the last due one,
// which also lets through packets whose message was lost.
//
//   zr-delay PIDFILE QUEUE:DELAY_US [QUEUE:DELAY_US ...]
//
// netns.sh runs it in the switch namespace, where the packets have already left the sending node:
// held inside the sender's own namespace they would still count against its socket, and TCP Small
// Queues would throttle the sender to a few kilobytes per delay (netem orphans what it holds for
// the same reason). PIDFILE is written once every queue is bound (the caller adds the iptables
// rules only then). On SIGTERM or SIGINT it accepts whatever it holds and exits. Linux only; no
// library beyond libc (raw nfnetlink messages).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_QUEUES 8
#define RING (1u << 17)          /* more than the kernel queue may hold (QUEUE_MAXLEN) */
#define QUEUE_MAXLEN (1u << 16)

struct held {
  uint32_t id;
  int64_t due_ns;
};

struct queue {
  uint16_t num;
  int64_t delay_ns;
  struct held *ring;
  uint32_t head, tail; /* head: oldest; tail: next free (both wrap at RING) */
};

static struct queue queues[MAX_QUEUES];
static int nqueues;
static volatile sig_atomic_t stopping;

static void die(const char *what) {
  fprintf(stderr, "zr-delay: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Appends one netlink attribute to the message at buf (nlmsg_len grows). */
static void put_attr(char *buf, uint16_t type, const void *data, uint16_t len) {
  struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
  struct nlattr *a = (struct nlattr *)(buf + NLMSG_ALIGN(nlh->nlmsg_len));
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + len;
  memcpy((char *)a + NLA_HDRLEN, data, len);
  nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void start_msg(char *buf, uint8_t msg, uint16_t flags, uint16_t queue_num) {
  struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
  memset(buf, 0, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
  nlh->nlmsg_len = NLMSG_HDRLEN + sizeof(struct nfgenmsg);
  nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | msg;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  struct nfgenmsg *g = NLMSG_DATA(nlh);
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(queue_num);
}

static void send_msg(int fd, char *buf) {
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
  if (sendto(fd, buf, nlh->nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0) die("netlink send");
}

/* Sends a request with NLM_F_ACK and fails on the kernel's error answer. */
static void request(int fd, char *buf, const char *what) {
  send_msg(fd, buf);
  char ans[8192];
  ssize_t n = recv(fd, ans, sizeof ans, 0);
  if (n < 0) die(what);
  struct nlmsghdr *nlh = (struct nlmsghdr *)ans;
  if (nlh->nlmsg_type == NLMSG_ERROR) {
    struct nlmsgerr *e = NLMSG_DATA(nlh);
    if (e->error != 0) {
      errno = -e->error;
      die(what);
    }
  }
}

static void bind_queue(int fd, uint16_t num) {
  char buf[256];
  struct nfqnl_msg_config_cmd cmd = {.command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET)};
  start_msg(buf, NFQNL_MSG_CONFIG, NLM_F_ACK, num);
  put_attr(buf, NFQA_CFG_CMD, &cmd, sizeof cmd);
  request(fd, buf, "bind queue (is another zr-delay bound to it?)");

  struct nfqnl_msg_config_params params = {.copy_range = htonl(0), .copy_mode = NFQNL_COPY_META};
  uint32_t maxlen = htonl(QUEUE_MAXLEN), flags = htonl(NFQA_CFG_F_GSO);
  start_msg(buf, NFQNL_MSG_CONFIG, NLM_F_ACK, num);
  put_attr(buf, NFQA_CFG_PARAMS, &params, sizeof params);
  put_attr(buf, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
  put_attr(buf, NFQA_CFG_FLAGS, &flags, sizeof flags);
  put_attr(buf, NFQA_CFG_MASK, &flags, sizeof flags);
  request(fd, buf, "configure queue");
}

/* Accepts every packet of q up to and including id (one message for the whole run). */
static void accept_upto(int fd, struct queue *q, uint32_t id) {
  char buf[128];
  struct nfqnl_msg_verdict_hdr v = {.verdict = htonl(NF_ACCEPT), .id = htonl(id)};
  start_msg(buf, NFQNL_MSG_VERDICT_BATCH, 0, q->num);
  put_attr(buf, NFQA_VERDICT_HDR, &v, sizeof v);
  send_msg(fd, buf);
}

/* Lets go every packet due by `now` (all of them when now is INT64_MAX); returns the next due time. */
static int64_t release(int fd, int64_t now) {
  int64_t next = INT64_MAX;
  for (int i = 0; i < nqueues; i++) {
    struct queue *q = &queues[i];
    uint32_t last = 0;
    int any = 0;
    while (q->head != q->tail && q->ring[q->head].due_ns <= now) {
      last = q->ring[q->head].id;
      any = 1;
      q->head = (q->head + 1) % RING;
    }
    if (any) accept_upto(fd, q, last);
    if (q->head != q->tail && q->ring[q->head].due_ns < next) next = q->ring[q->head].due_ns;
  }
  return next;
}

static void hold(uint16_t num, uint32_t id, int64_t now) {
  for (int i = 0; i < nqueues; i++) {
    struct queue *q = &queues[i];
    if (q->num != num) continue;
    uint32_t after = (q->tail + 1) % RING;
    if (after == q->head) return; /* cannot happen below QUEUE_MAXLEN; a later batch verdict covers it */
    q->ring[q->tail] = (struct held){.id = id, .due_ns = now + q->delay_ns};
    q->tail = after;
    return;
  }
}

static void on_packet(struct nlmsghdr *nlh, int64_t now) {
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) return;
  struct nfgenmsg *g = NLMSG_DATA(nlh);
  int left = (int)nlh->nlmsg_len - NLMSG_HDRLEN - (int)NLMSG_ALIGN(sizeof *g);
  struct nlattr *a = (struct nlattr *)((char *)g + NLMSG_ALIGN(sizeof *g));
  while (left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= left) {
    if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR) {
      struct nfqnl_msg_packet_hdr *ph = (struct nfqnl_msg_packet_hdr *)((char *)a + NLA_HDRLEN);
      hold(ntohs(g->res_id), ntohl(ph->packet_id), now);
      return;
    }
    left -= NLA_ALIGN(a->nla_len);
    a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
  }
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: zr-delay PIDFILE QUEUE:DELAY_US [QUEUE:DELAY_US ...]\n");
    return 2;
  }
  for (int i = 2; i < argc && nqueues < MAX_QUEUES; i++) {
    unsigned num;
    long long us;
    if (sscanf(argv[i], "%u:%lld", &num, &us) != 2 || num > 65535 || us < 0) {
      fprintf(stderr, "zr-delay: bad queue '%s', expected QUEUE:DELAY_US (e.g. 0:20000)\n", argv[i]);
      return 2;
    }
    queues[nqueues] = (struct queue){.num = (uint16_t)num, .delay_ns = us * 1000};
    queues[nqueues].ring = calloc(RING, sizeof(struct held));
    if (!queues[nqueues].ring) die("calloc");
    nqueues++;
  }
  /* The default 50 us timer slack would add to every 100 us delay. */
  prctl(PR_SET_TIMERSLACK, 1UL);

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) die("netlink socket");
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("netlink bind");
  int rcvbuf = 16 << 20, one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) die("SO_RCVBUFFORCE");
  /* A burst that overflows the socket loses messages, not packets: the batch verdicts cover them. */
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  for (int i = 0; i < nqueues; i++) bind_queue(fd, queues[i].num);

  sigset_t block, none;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &none);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
  FILE *pf = fopen(tmp, "w");
  if (!pf || fprintf(pf, "%d\n", (int)getpid()) < 0 || fclose(pf) != 0 || rename(tmp, argv[1]) < 0) die(argv[1]);

  static char buf[1 << 16];
  while (!stopping) {
    int64_t next = release(fd, now_ns());
    struct pollfd p = {.fd = fd, .events = POLLIN};
    struct timespec ts, *timeout = NULL;
    if (next != INT64_MAX) {
      int64_t wait = next - now_ns();
      if (wait < 0) wait = 0;
      ts = (struct timespec){.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
      timeout = &ts;
    }
    if (ppoll(&p, 1, timeout, &none) < 0 && errno != EINTR) die("ppoll");
    int64_t now = now_ns();
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        if (errno == ENOBUFS) continue;
        die("netlink recv");
      }
      int len = (int)n;
      for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf; NLMSG_OK(nlh, len); nlh = NLMSG_NEXT(nlh, len))
        on_packet(nlh, now);
    }
  }
  release(fd, INT64_MAX);
  unlink(argv[1]);
  return 0;
}
