#!/usr/bin/python3
"""PyTorch peer for the public benchmark cases (docs/bench_cases.md defines them).

Times per-sample gradients in PyTorch on the CPU, the way a PyTorch user would get them:
  functorch  vmap(grad(f)) over the batch (the fastest general PyTorch route)
  loop       one backward pass per sample (the naive route, timed on 32 samples, scaled to N)
and prints one JSON line per case, e.g.
  {"case": "mlp", "N": 256, "D": 235146, "functorch_ms": 110.8, "loop_ms": 181.5, "threads": 1}

Setup (Debian's packages; the pyenv python on PATH does not see them); `npm run bench -- --torch`
runs it (its --torch-peer option names another copy):
  apt-get install -y python3-torch libopenblas0-pthread
  /usr/bin/python3 bench/torch_peer.py [--threads N] [--case mlp] [--check DIR]
(by default each case is timed with 1 and with 2 threads and the faster is reported)

--check DIR also writes, per case, the model weights, a batch and the expected per-sample
gradients as .npy files, to compare an implementation against (float32, C order,
parameters in PyTorch named_parameters() order, each flattened row-major).
"""
import argparse, json, os, sys, time

import torch
from torch import nn
from functorch import make_functional, vmap, grad


def cases():
    return {
        # the seed's own example: scalar output per sample, objective = output
        "seed3d": (lambda: nn.Sequential(nn.Conv3d(1, 2, 2, bias=False), nn.ReLU(), nn.Conv3d(2, 1, 2), nn.ReLU(),
                                         nn.AvgPool3d(4), nn.Flatten(start_dim=1)), (1, 6, 6, 6), 1000, None),
        # MNIST-sized MLP, objective = per-sample cross-entropy
        "mlp": (lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)),
                (784,), 256, "cross_entropy"),
        # CIFAR-sized CNN, objective = per-sample cross-entropy
        "cnn": (lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Flatten(), nn.Linear(32 * 8 * 8, 10)), (3, 32, 32), 128, "cross_entropy"),
    }


def median_time(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="0: the faster of 1 and 2 threads")
    ap.add_argument("--case", action="append")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--check")
    a = ap.parse_args()
    thread_counts = [a.threads] if a.threads else [1, 2]
    torch.manual_seed(0)
    for name, (make, shape, n, loss) in cases().items():
        if a.case and name not in a.case:
            continue
        net = make()
        x = torch.randn((n,) + shape)
        y = torch.randint(0, 10, (n,))
        ce = nn.CrossEntropyLoss(reduction="sum")
        objective = (lambda out, yy: out.sum()) if loss is None else (lambda out, yy: ce(out, yy))
        fnet, params = make_functional(net)

        def one(p, xi, yi):
            return objective(fnet(p, xi.unsqueeze(0)), yi.unsqueeze(0))

        per_sample = lambda: vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
        best = None
        for th in thread_counts:
            torch.set_num_threads(th)
            t = median_time(per_sample, a.reps)
            if best is None or t < best[0]:
                best = (t, th)
        t_ft, threads = best
        torch.set_num_threads(threads)

        def loop(m=32):
            out = net(x[:m])
            for i in range(m):
                net.zero_grad()
                objective(out[i:i + 1], y[i:i + 1]).backward(retain_graph=True)
                [p.grad.clone() for p in net.parameters()]

        t_loop = median_time(loop, 3) * n / 32
        d = sum(p.numel() for p in net.parameters())
        print(json.dumps({"case": name, "N": n, "D": d, "functorch_ms": round(t_ft * 1e3, 3),
                          "loop_ms": round(t_loop * 1e3, 2), "threads": threads}), flush=True)
        if a.check:
            import numpy as np
            out = os.path.join(a.check, name)
            os.makedirs(out, exist_ok=True)
            for k, v in net.state_dict().items():
                np.save(os.path.join(out, f"param.{k}.npy"), v.numpy().astype(np.float32))
            np.save(os.path.join(out, "x.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(out, "y.npy"), y.numpy().astype(np.int64))
            g = per_sample()
            jac = torch.cat([gi.reshape(n, -1) for gi in g], 1)
            np.save(os.path.join(out, "jacobian.npy"), jac.detach().numpy().astype(np.float32))


if __name__ == "__main__":
    sys.exit(main())
