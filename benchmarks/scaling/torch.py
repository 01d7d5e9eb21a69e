"""Training scaling of the tiny GPT in PyTorch: 1 rank (plain model) vs N ranks (DDP over Gloo),
one thread per rank: torch DDP + Gloo's 2-rank speedup, the reference zeroring's scaling is set
against, measured here beside zeroring's benchmarks/scaling/main.ts with the same per-rank batch
(16 x 64) and AdamW, so the two speedups compare like with like. Run by vs-torch.ts beside it.

  /usr/bin/python3 benchmarks/scaling/torch.py [--nprocs 1,2] [--independent 2] [--batch 16] [--steps 12] [--warmup 4]

The model is benchmarks/train-throughput/torch.py's (imported, not copied). Each world size runs as its own
job (ranks started with torch.multiprocessing.spawn, rendezvous via env:// on 127.0.0.1 and a free
port); each rank draws its own random batches. Rank 0 times every step; the step is synchronous
under DDP (its backward waits for the gradient all-reduce), so rank 0's step time is the job's.
--independent N also runs N plain one-rank models at once, started the same way but without a
process group: the host's ceiling for N processes (their summed tokens/s), beside which DDP's cost
is DDP's own and not the machine's.
Prints one JSON line: per world size (and mode) the median step ms after the warm-up, total
tokens/s and the speedup over the first world size.
"""
import argparse, importlib.util, json, os, socket, statistics, time
from pathlib import Path
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

_model_file = Path(__file__).parent.parent / 'train-throughput' / 'torch.py'
_spec = importlib.util.spec_from_file_location('train_throughput_torch', _model_file)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def rank_main(rank, world, port, batch, steps, warmup, results, ddp):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    ddp = ddp and world > 1
    if ddp:
        dist.init_process_group('gloo', init_method='env://')
    torch.manual_seed(0)  # same initial parameters everywhere (DDP broadcasts rank 0's anyway)
    model = tiny.GPT()
    if ddp:
        model = DDP(model)
    opt = tiny.make_optimizer(model.parameters())
    gen = torch.Generator().manual_seed(1000 + rank)  # disjoint data per rank
    wall, cpu = [], []
    for s in range(warmup + steps):
        x = torch.randint(0, tiny.V, (batch, tiny.T), generator=gen)
        y = torch.randint(0, tiny.V, (batch, tiny.T), generator=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if s >= warmup:
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    results.put({'rank': rank, 'stepMs': statistics.median(wall), 'cpuPerWall': statistics.median(c / w for c, w in zip(cpu, wall))})
    if ddp:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--nprocs', default='1,2')
    p.add_argument('--independent', default='', help='world sizes to also run as that many one-rank models at once')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--steps', type=int, default=12, help='measured steps (after the warm-up)')
    p.add_argument('--warmup', type=int, default=4)
    a = p.parse_args()
    # Gloo picks its interface from the hostname unless told; loopback is what the ranks share.
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    results = mp.get_context('spawn').SimpleQueue()
    rows = []
    independent = {int(n) for n in a.independent.split(',') if n}
    # The ceiling right after DDP, so that the two see the machine in the same state.
    configs = [(w, mode) for w in map(int, a.nprocs.split(',')) for mode in (['ddp', 'independent'] if w in independent else ['ddp'])]
    for world, mode in configs:
        mp.spawn(rank_main, args=(world, free_port(), a.batch, a.steps, a.warmup, results, mode == 'ddp'), nprocs=world, join=True)
        per_rank = sorted((results.get() for _ in range(world)), key=lambda r: r['rank'])
        # DDP: the step is synchronous, so rank 0's step is the job's. Independent: each model's own.
        steps_ms = [r['stepMs'] for r in per_rank] if mode == 'independent' else [per_rank[0]['stepMs']] * world
        tokens_per_sec = sum(a.batch * tiny.T * 1000 / ms for ms in steps_ms)
        rows.append({'nproc': world, 'mode': 'local' if world == 1 else mode, 'stepMs': per_rank[0]['stepMs'], 'tokensPerSec': tokens_per_sec,
                     'speedup': tokens_per_sec / (rows[0]['tokensPerSec'] if rows else tokens_per_sec), 'cpuPerWall': per_rank[0]['cpuPerWall']})
    print(json.dumps({'torch': torch.__version__, 'backend': 'gloo', 'threadsPerRank': 1, 'batchPerRank': a.batch,
                      'blockSize': tiny.T, 'steps': a.steps, 'warmup': a.warmup, 'results': rows}))


if __name__ == '__main__':
    main()
