"""All-reduce time with torch.distributed over Gloo (the C++ collectives PyTorch ships for CPUs),
timed the way `zeroring bench collectives` times ours: per iteration the slowest rank's time,
median over iterations; a barrier before each iteration for buffers >= 1 MiB, back to back below.

  /usr/bin/python3 benchmarks/collectives/gloo.py --nproc 2 --sizes 4096,16777216 [--iters 10] [--small-iters 1000]

Prints one JSON line: {"nproc", "torch", "rows": [{"bytes", "timeUs", "busbwGBs"}]}.
Run by benchmarks/collectives/vs-gloo.ts, alternating with zeroring's own bench.
"""
import argparse, json, os, socket, statistics, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BARRIER_FROM = 1 << 20


def worker(rank, a, port, queue):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=a.nproc)
    rows = []
    for size in a.sizes:
        buf = torch.ones(size // 4, dtype=torch.float32)
        big = size >= BARRIER_FROM
        iters = a.iters if big else a.small_iters
        times = torch.zeros(iters, dtype=torch.float64)
        for _ in range(a.warmup if big else a.small_warmup):
            dist.all_reduce(buf)
        for i in range(iters):
            if big:
                dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            times[i] = time.perf_counter() - t0
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        us = statistics.median(times.tolist()) * 1e6
        n = a.nproc
        rows.append({'bytes': size, 'timeUs': us, 'busbwGBs': size / us / 1e3 * 2 * (n - 1) / n})
    if rank == 0:
        queue.put(rows)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--nproc', type=int, default=2)
    p.add_argument('--sizes', type=lambda s: [int(x) for x in s.split(',')], default=[4096, 16 << 20, 32 << 20, 64 << 20])
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--small-iters', type=int, default=1000)
    p.add_argument('--small-warmup', type=int, default=100)
    a = p.parse_args()
    ctx = mp.get_context('spawn')
    queue = ctx.SimpleQueue()
    mp.start_processes(worker, args=(a, free_port(), queue), nprocs=a.nproc, start_method='spawn')
    print(json.dumps({'nproc': a.nproc, 'torch': torch.__version__, 'rows': queue.get()}))
