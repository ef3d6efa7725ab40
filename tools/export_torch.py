#!/usr/bin/python3
"""Export a PyTorch ``nn.Sequential`` to jacobian-wasm's model format.

A model is two files:

* a JSON spec, ``{"format": "torch.nn.Sequential", "layers": [...]}``, one object per
  module with ``"type"`` (the PyTorch class name) and the constructor arguments under
  their PyTorch names (``in_features``, ``kernel_size``, ``negative_slope``, ...);
  nested ``nn.Sequential`` modules become ``{"type": "Sequential", "layers": [...]}``;
* a ``.safetensors`` file with every tensor of ``model.state_dict()`` as F32, keyed by
  the state-dict names (``"0.weight"``, ``"2.1.bias"``).

Supported modules: Linear, Conv1d/2d/3d (padding_mode "zeros"), ReLU, LeakyReLU, Sigmoid,
Tanh, ELU, GELU, SiLU, Softplus, Identity, Dropout (exported as is; jacobian-wasm evaluates
it in eval mode, i.e. as the identity), Flatten, MaxPool1d/2d/3d (return_indices=False),
AvgPool1d/2d/3d and Sequential nested to any depth. Anything else raises ``TypeError``
naming the module and its path in the model.

Usage as a module (put ``tools/`` on ``sys.path`` or copy this file next to your script)::

    import torch
    from torch import nn
    from export_torch import export_model, save_npy

    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 32 * 32, 10))
    export_model(model, "model.json", "weights.safetensors")
    save_npy("x.npy", torch.randn(8, 3, 32, 32))        # a batch of inputs, float32

Usage as a script, on a model saved whole with ``torch.save(model, "model.pt")`` or built
by a function ``package.module:factory`` that returns it::

    /usr/bin/python3 tools/export_torch.py model.pt model.json weights.safetensors
    /usr/bin/python3 tools/export_torch.py mypkg.nets:make_cnn model.json weights.safetensors

Only the Python standard library, numpy and torch are needed: the safetensors file is
written by hand (8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the raw little-endian data), so the ``safetensors`` package is not.
"""
import argparse
import importlib
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

__all__ = ["export_model", "model_spec", "save_safetensors", "save_npy"]


def _size(value):
    """A size argument as PyTorch holds it: int stays int, tuple becomes a list."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    return int(value)


def _conv(m):
    if m.padding_mode != "zeros":
        raise TypeError(f"{type(m).__name__}: padding_mode must be 'zeros', got {m.padding_mode!r}")
    padding = m.padding if isinstance(m.padding, str) else _size(m.padding)
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": _size(m.kernel_size),
            "stride": _size(m.stride), "padding": padding, "dilation": _size(m.dilation), "groups": m.groups,
            "bias": m.bias is not None, "padding_mode": "zeros"}


def _max_pool(m):
    if m.return_indices:
        raise TypeError(f"{type(m).__name__}: return_indices must be False")
    return {"kernel_size": _size(m.kernel_size), "stride": _size(m.stride), "padding": _size(m.padding),
            "dilation": _size(m.dilation), "ceil_mode": bool(m.ceil_mode)}


def _avg_pool(m):
    spec = {"kernel_size": _size(m.kernel_size), "stride": _size(m.stride), "padding": _size(m.padding),
            "ceil_mode": bool(m.ceil_mode), "count_include_pad": bool(m.count_include_pad)}
    if not isinstance(m, nn.AvgPool1d):  # AvgPool1d has no divisor_override
        spec["divisor_override"] = None if m.divisor_override is None else int(m.divisor_override)
    return spec


# Exact classes only: a subclass may override forward() and would be exported wrongly.
_LAYERS = {
    nn.Linear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.ReLU: lambda m: {},
    nn.Sigmoid: lambda m: {},
    nn.Tanh: lambda m: {},
    nn.SiLU: lambda m: {},
    nn.Identity: lambda m: {},
    nn.LeakyReLU: lambda m: {"negative_slope": float(m.negative_slope)},
    nn.ELU: lambda m: {"alpha": float(m.alpha)},
    nn.GELU: lambda m: {"approximate": getattr(m, "approximate", "none")},
    nn.Softplus: lambda m: {"beta": float(m.beta), "threshold": float(m.threshold)},
    nn.Dropout: lambda m: {"p": float(m.p)},
    nn.Flatten: lambda m: {"start_dim": int(m.start_dim), "end_dim": int(m.end_dim)},
    nn.MaxPool1d: _max_pool,
    nn.MaxPool2d: _max_pool,
    nn.MaxPool3d: _max_pool,
    nn.AvgPool1d: _avg_pool,
    nn.AvgPool2d: _avg_pool,
    nn.AvgPool3d: _avg_pool,
}


def _layers(seq, path, seen):
    layers = []
    for name, m in seq._modules.items():  # not named_children(): it silently skips repeated modules
        where = f"{path}.{name}" if path else name
        # A module used twice is fine without parameters (a shared ReLU) but would tie parameters.
        if id(m) in seen and any(True for _ in m.parameters()):
            raise TypeError(f"module {where} ({type(m).__name__}) appears twice in the model: shared parameters "
                            f"(tied weights) are not supported")
        seen.add(id(m))
        if type(m) is nn.Sequential:
            layers.append({"type": "Sequential", "layers": _layers(m, where, seen)})
            continue
        describe = _LAYERS.get(type(m))
        if describe is None:
            supported = ", ".join(sorted(c.__name__ for c in _LAYERS)) + ", Sequential"
            raise TypeError(f"module {where} is a {type(m).__module__}.{type(m).__name__}, which jacobian-wasm "
                            f"does not support; supported: {supported}")
        try:
            layers.append({"type": type(m).__name__, **describe(m)})
        except TypeError as e:
            raise TypeError(f"module {where}: {e}") from None
    return layers


def model_spec(model):
    """The JSON-serialisable spec of ``model`` (an ``nn.Sequential``)."""
    if type(model) is not nn.Sequential:
        raise TypeError(f"export_model expects a torch.nn.Sequential, got {type(model).__name__}")
    return {"format": "torch.nn.Sequential", "layers": _layers(model, "", set())}


def save_safetensors(tensors, path):
    """Write ``{name: tensor}`` as a safetensors file, every tensor as little-endian F32."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t), dtype="<f4")
        blobs.append(a.tobytes())
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def export_model(model, spec_path, weights_path):
    """Write ``model`` (an ``nn.Sequential``) as a JSON spec and a safetensors weights file.

    Raises ``TypeError`` for an unsupported module, a non-"zeros" padding mode,
    ``return_indices=True`` or a module used twice (tied parameters).
    """
    spec = model_spec(model)
    state = model.state_dict()
    names = [n for n, _ in model.named_parameters()]
    if list(state.keys()) != names:  # buffers (or tied parameters) would need a place in the format first
        extra = sorted(set(state.keys()) - set(names))
        raise TypeError(f"the model's state_dict holds tensors that are not parameters: {extra}")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    save_safetensors(state, weights_path)
    return spec


def save_npy(path, array, dtype=np.float32):
    """Save a tensor or array as a C-ordered ``.npy`` file (float32 unless ``dtype`` says otherwise)."""
    if torch.is_tensor(array):
        array = array.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(np.asarray(array, dtype=dtype)))


def _load(source):
    if ":" in source and not source.endswith((".pt", ".pth")):
        module, _, factory = source.partition(":")
        sys.path.insert(0, os.getcwd())
        return getattr(importlib.import_module(module), factory)()
    try:
        return torch.load(source, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(source, map_location="cpu")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export a torch.nn.Sequential to a JSON spec + safetensors weights.")
    ap.add_argument("model", help="a file saved with torch.save(model), or package.module:factory")
    ap.add_argument("spec", help="where to write the JSON spec")
    ap.add_argument("weights", help="where to write the .safetensors weights")
    a = ap.parse_args(argv)
    spec = export_model(_load(a.model), a.spec, a.weights)
    print(f"wrote {a.spec} ({len(spec['layers'])} top-level layers) and {a.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
