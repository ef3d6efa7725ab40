#!/usr/bin/python3
"""PyTorch functorch's DP-SGD clipped sum (or only its per-sample gradients) on the files
bench/clipped_vs_torch.ts writes.

    /usr/bin/python3 bench/torch_clipped.py --dir DIR [--quantity clipped_sum|per_sample_gradients]
        [--threads 1,2] [--reps 20] [--max-norm 1] [--write-result]

DIR holds model.json (the CLI's model spec: {"format": "torch.nn.Sequential", "layers": [...]}),
weights.safetensors (float32, state-dict names), x.npy (float32) and y.npy (int64 class indices).
The same network, weights and batch as `jacobian-wasm jacobian --quantity clipped_sum` (or,
with --quantity per_sample_gradients, as `jacobian-wasm jacobian` with its default quantity).

What one timed call does, the whole of DP-SGD's clipping step as a PyTorch user writes it
(Opacus's per-sample-norm and weighted-sum idioms):
  g  = vmap(grad(loss of one sample))(params, x, y)      per-sample gradients, one [N, ...] per parameter
  ‖g_n‖ over all parameters                               (per-parameter norms, then their norm)
  f_n = min(1, C / ‖g_n‖)                                 clip factors
  Σ_n f_n g_n  per parameter, torch.einsum("n,n...->...")
With --quantity per_sample_gradients a timed call stops after the first line: functorch's
per-sample gradients, fresh tensors each call, as it returns them (one [N, ...] per parameter).
`make_functional` runs once, outside the timed calls. Each thread count: one untimed warm-up
call, then the median of --reps calls. Prints one JSON line:
  {"N", "D", "threads_ms": {"1": ms, "2": ms}, "torch_median_ms", "torch_threads", "torch", "names",
   "result_file"}
(torch_median_ms: the faster thread count's median). --write-result also saves the result
(float32) in named_parameters() order and names the file in "result_file" (else null):
the clipped sum, [D], to DIR/torch_clipped.npy; the per-sample gradients, each flattened
per sample and concatenated into [N, D] (the CLI's rows), to DIR/torch_per_sample_gradients.npy.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn
from functorch import grad, make_functional, vmap

LAYERS = {"Linear", "ReLU", "Tanh", "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool1d",
          "Flatten", "Sequential"}
RESULT_FILES = {"clipped_sum": "torch_clipped.npy", "per_sample_gradients": "torch_per_sample_gradients.npy"}


def build(layers):
    modules = []
    for spec in layers:
        kind = spec["type"]
        if kind not in LAYERS:
            raise SystemExit(f"torch_clipped.py: layer type {kind!r} is not handled here ({', '.join(sorted(LAYERS))})")
        if kind == "Sequential":
            modules.append(build(spec["layers"]))
            continue
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
        modules.append(getattr(nn, kind)(**kwargs))
    return nn.Sequential(*modules)


def read_safetensors(path):
    """{name: float32 tensor}: 8-byte little-endian header length, JSON header, raw data."""
    with open(path, "rb") as f:
        blob = f.read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length].decode("utf8"))
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"torch_clipped.py: {name} is {info['dtype']}, only F32 is handled")
        start, end = info["data_offsets"]
        array = np.frombuffer(blob, dtype="<f4", count=(end - start) // 4, offset=base + start).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def median_ms(f, reps):
    f()  # warm-up, untimed
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    mid = len(ts) // 2
    return 1e3 * (ts[mid] if len(ts) % 2 else (ts[mid - 1] + ts[mid]) / 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--quantity", choices=sorted(RESULT_FILES), default="clipped_sum")
    ap.add_argument("--threads", default="1,2", help="comma list; the fastest is reported")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max-norm", type=float, default=1.0)
    ap.add_argument("--write-result", action="store_true")
    a = ap.parse_args()

    with open(os.path.join(a.dir, "model.json")) as f:
        spec = json.load(f)
    if spec.get("format") != "torch.nn.Sequential":
        raise SystemExit("torch_clipped.py: model.json is not a torch.nn.Sequential spec")
    net = build(spec["layers"])
    net.load_state_dict(read_safetensors(os.path.join(a.dir, "weights.safetensors")), strict=True)
    net.eval()
    x = torch.from_numpy(np.load(os.path.join(a.dir, "x.npy")).astype(np.float32))
    y = torch.from_numpy(np.load(os.path.join(a.dir, "y.npy")).astype(np.int64))
    n = x.shape[0]
    C = a.max_norm

    # Once, outside the timed calls.
    fnet, params = make_functional(net)
    ce = nn.CrossEntropyLoss(reduction="sum")

    def loss_one(p, xi, yi):
        return ce(fnet(p, xi.unsqueeze(0)), yi.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def per_sample_gradients():
        return per_sample(params, x, y)

    def clipped_sum():
        g = per_sample(params, x, y)
        with torch.no_grad():
            norms = torch.stack([gi.reshape(n, -1).norm(2, dim=1) for gi in g], dim=1).norm(2, dim=1)
            factors = (C / norms).clamp(max=1.0)
            total = [torch.einsum("n,n...->...", factors, gi) for gi in g]
        return total

    timed = clipped_sum if a.quantity == "clipped_sum" else per_sample_gradients
    threads_ms = {}
    for th in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(th)
        threads_ms[str(th)] = round(median_ms(timed, a.reps), 3)
    best = min(threads_ms, key=lambda k: threads_ms[k])

    result_file = None
    if a.write_result:
        torch.set_num_threads(int(best))
        result = timed()
        if a.quantity == "clipped_sum":
            flat = torch.cat([t.reshape(-1) for t in result])
        else:
            flat = torch.cat([g.detach().reshape(n, -1) for g in result], dim=1)
        result_file = os.path.join(a.dir, RESULT_FILES[a.quantity])
        np.save(result_file, flat.numpy().astype(np.float32))

    d = sum(p.numel() for p in net.parameters())
    print(json.dumps({
        "N": n, "D": d, "threads_ms": threads_ms, "torch_median_ms": threads_ms[best], "torch_threads": int(best),
        "reps": a.reps, "torch": torch.__version__, "names": [k for k, _ in net.named_parameters()],
        "quantity": a.quantity, "result_file": result_file,
    }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
