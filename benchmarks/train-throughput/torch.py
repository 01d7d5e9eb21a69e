"""The tiny GPT training step in PyTorch on one CPU thread: the reference zeroring's step is
measured against (torch 1.13, ~1.9k tokens/s on these 2-core machines). Same shapes as @zeroring/gpt's tiny
preset (C=128, L=2, H=4, T=64, V=89, GELU-tanh MLP 4C, tied head), AdamW, batch 8 x 64.

  python3 benchmarks/train-throughput/torch.py [--steps N] [--warmup W] [--batch B]

Prints one JSON line: median wall and CPU (process) milliseconds per step and tokens/s.
Run by vs-torch.ts beside it, alternating with the tfjs step.
benchmarks/scaling/torch.py imports GPT, V, T and make_optimizer from this file (the script part
runs only under __main__).
"""
import argparse, json, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

V, T, C, L, H = 89, 64, 128, 2, 4


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.register_buffer('mask', torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        B = x.shape[0]
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = F.softmax(att.masked_fill(self.mask == 0, float('-inf')), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate='tanh'))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        nn.init.normal_(self.wte.weight, std=0.02)  # GPT-2 init, as @zeroring/gpt (loss starts near ln V)
        nn.init.normal_(self.wpe.weight, std=0.02)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--batch', type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT()
    opt = make_optimizer(model.parameters())
    wall, cpu, losses = [], [], []
    for s in range(a.warmup + a.steps):
        x = torch.randint(0, V, (a.batch, T))
        y = torch.randint(0, V, (a.batch, T))
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if s >= a.warmup:
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    tokens = a.batch * T
    print(json.dumps({
        'torch': torch.__version__, 'threads': torch.get_num_threads(), 'params': sum(p.numel() for p in model.parameters()),
        'steps': a.steps, 'medianStepMs': statistics.median(wall), 'medianCpuMs': statistics.median(cpu),
        'tokensPerSec': tokens * 1000 / statistics.median(wall), 'tokensPerCpuSec': tokens * 1000 / statistics.median(cpu),
        'initialLoss': losses[0], 'finalLoss': losses[-1],
    }))


if __name__ == '__main__':
    main()
