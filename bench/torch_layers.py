#!/usr/bin/python3
"""functorch vmap(grad) times for the models of bench/layers.ts (the layers of issue 4, and
models beyond the public cases).

    /usr/bin/python3 bench/torch_layers.py      # one JSON line per model: {"case", "N", "D", "functorch_ms", "threads"}

Same networks, batch sizes and objective (cross-entropy, reduction sum) as bench/layers.ts;
the faster of 1 and 2 threads, median of 7 runs after a warm-up, as bench/torch_peer.py.
"""
import json
import os
import sys
import time

import torch
from torch import nn
from functorch import grad, make_functional_with_buffers, vmap

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from export_torch import Residual  # noqa: E402


def cases():
    def resnet_bn():
        block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                              nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), Residual(block), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def decoder():
        return nn.Sequential(nn.ConvTranspose2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
                             nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
                             nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1), nn.Flatten(), nn.Linear(3 * 32 * 32, 10))

    def embedding_ln():
        return nn.Sequential(nn.Embedding(1000, 64), nn.LayerNorm(64), nn.GELU(), nn.Flatten(), nn.GroupNorm(4, 1024),
                             nn.Linear(1024, 10))

    def lenet5():
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))

    def mlp_wide():
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def audio1d():
        return nn.Sequential(nn.Conv1d(1, 16, 9, stride=4), nn.ReLU(), nn.MaxPool1d(2),
                             nn.Conv1d(16, 32, 9, stride=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                             nn.Linear(32, 10))

    return {
        "resnet-bn": (resnet_bn, (3, 32, 32), 64, False),
        "decoder": (decoder, (16, 4, 4), 64, False),
        "lenet5": (lenet5, (1, 28, 28), 256, False),
        "mlp-wide": (mlp_wide, (784,), 64, False),
        "audio1d": (audio1d, (1, 4000), 64, False),
        "embedding-ln": (embedding_ln, (16,), 256, True),
    }


def median_time(f, reps=7):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    torch.manual_seed(0)
    for name, (make, shape, n, tokens) in cases().items():
        net = make().eval()
        x = torch.randint(0, 1000, (n,) + shape) if tokens else torch.randn((n,) + shape)
        y = torch.randint(0, 10, (n,))
        ce = nn.CrossEntropyLoss(reduction="sum")
        fnet, params, buffers = make_functional_with_buffers(net)

        def one(p, b, xi, yi):
            return ce(fnet(p, b, xi.unsqueeze(0)), yi.unsqueeze(0))

        per_sample = lambda: vmap(grad(one), in_dims=(None, None, 0, 0))(params, buffers, x, y)
        best = None
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t = median_time(per_sample)
            if best is None or t < best[0]:
                best = (t, threads)
        d = sum(p.numel() for p in net.parameters())
        print(json.dumps({"case": name, "N": n, "D": d, "functorch_ms": round(best[0] * 1e3, 3), "threads": best[1]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
