#!/usr/bin/python3
"""Export a PyTorch ``nn.Sequential`` to jacobian-wasm's model format.

A model is two files:

* a JSON spec, ``{"format": "torch.nn.Sequential", "layers": [...]}``, one object per
  module with ``"type"`` (the PyTorch class name) and the constructor arguments under
  their PyTorch names (``in_features``, ``kernel_size``, ``negative_slope``, ...);
  nested ``nn.Sequential`` modules become ``{"type": "Sequential", "layers": [...]}``;
* a ``.safetensors`` file with every tensor of ``model.state_dict()`` as F32, keyed by
  the state-dict names (``"0.weight"``, ``"2.1.bias"``).

Supported modules: Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d (padding_mode "zeros"),
ReLU, LeakyReLU, Sigmoid, Tanh, ELU, GELU, SiLU, Softplus, Identity, Dropout (exported as
is; jacobian-wasm evaluates it in eval mode, i.e. as the identity), Flatten, MaxPool1d/2d/3d (return_indices=False),
AvgPool1d/2d/3d, BatchNorm1d/2d/3d (evaluated in eval mode, with its running statistics),
InstanceNorm1d/2d/3d, LayerNorm, GroupNorm, Embedding (max_norm=None, scale_grad_by_freq=False),
AdaptiveAvgPool1d/2d/3d, AdaptiveMaxPool1d/2d/3d (return_indices=False), Unflatten and Sequential
nested to any depth. Anything else raises ``ExportError`` (a ``TypeError``) naming the module and its
path in the model.
Buffers (BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``) are written to
the safetensors file with the parameters, as F32.

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

As a script it ends a mistake with one line on stderr and exit code 2 (no traceback): a file
that holds a ``state_dict`` rather than the model, a model whose class (defined in the training
script) cannot be unpickled here, a module jacobian-wasm does not support (its path and the
supported list). ``export_model`` called in the training script itself needs no unpickling.

Only the Python standard library, numpy and torch are needed: the safetensors file is
written by hand (8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the raw little-endian data), so the ``safetensors`` package is not.
"""
import argparse
from collections.abc import Mapping
import pickle
import re
from types import SimpleNamespace
import importlib
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

__all__ = ["export_model", "model_spec", "save_safetensors", "save_npy", "ExportError"]

# What to do when the file given is not a model this script can load.
_HINT = "pass the model, or use export_model in the training script"


class ExportError(TypeError):
    """A model (or a file) that cannot be exported; the message says what and where, in one line."""


def _size(value):
    """A size argument as PyTorch holds it: int stays int, tuple becomes a list."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    return int(value)


def _conv(m):
    if m.padding_mode != "zeros":
        raise ExportError(f"{type(m).__name__}: padding_mode must be 'zeros', got {m.padding_mode!r}")
    padding = m.padding if isinstance(m.padding, str) else _size(m.padding)
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": _size(m.kernel_size),
            "stride": _size(m.stride), "padding": padding, "dilation": _size(m.dilation), "groups": m.groups,
            "bias": m.bias is not None, "padding_mode": "zeros"}


def _conv_transpose(m):
    if m.padding_mode != "zeros":
        raise ExportError(f"{type(m).__name__}: padding_mode must be 'zeros', got {m.padding_mode!r}")
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": _size(m.kernel_size),
            "stride": _size(m.stride), "padding": _size(m.padding), "output_padding": _size(m.output_padding),
            "groups": m.groups, "bias": m.bias is not None, "dilation": _size(m.dilation), "padding_mode": "zeros"}


def _max_pool(m):
    if m.return_indices:
        raise ExportError(f"{type(m).__name__}: return_indices must be False")
    return {"kernel_size": _size(m.kernel_size), "stride": _size(m.stride), "padding": _size(m.padding),
            "dilation": _size(m.dilation), "ceil_mode": bool(m.ceil_mode)}


def _avg_pool(m):
    spec = {"kernel_size": _size(m.kernel_size), "stride": _size(m.stride), "padding": _size(m.padding),
            "ceil_mode": bool(m.ceil_mode), "count_include_pad": bool(m.count_include_pad)}
    if not isinstance(m, nn.AvgPool1d):  # AvgPool1d has no divisor_override
        spec["divisor_override"] = None if m.divisor_override is None else int(m.divisor_override)
    return spec


class Residual(nn.Module):
    """``shortcut(x) + block(x)``, the shortcut the identity when None: jacobian-wasm's ``Residual``.

    Build residual networks from it in PyTorch and they export as ``{"type": "Residual", ...}``
    with the same state-dict names (``block.*``, ``shortcut.*``).
    """

    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


class Parallel(nn.Module):
    """Branches on the same input, concatenated along ``dim`` or summed: jacobian-wasm's ``Parallel``.

    Branches are registered as ``"0"``, ``"1"``, ... as in ``nn.Sequential``.
    """

    def __init__(self, branches, combine="concat", dim=1):
        super().__init__()
        if combine not in ("concat", "sum"):
            raise ValueError(f'combine must be "concat" or "sum", got {combine!r}')
        for i, branch in enumerate(branches):
            self.add_module(str(i), branch)
        self.combine = combine
        self.dim = dim

    def forward(self, x):
        outputs = [branch(x) for branch in self._modules.values()]
        return torch.cat(outputs, self.dim) if self.combine == "concat" else sum(outputs)


def _one(module, parent, name, seen):
    """The spec of one module found at ``parent.name``."""
    return _layers(SimpleNamespace(_modules={name: module}), parent, seen)[0]


def _channel_norm(m):
    """BatchNorm's and InstanceNorm's arguments (PyTorch's ``_NormBase``)."""
    return {"num_features": int(m.num_features), "eps": float(m.eps),
            "momentum": None if m.momentum is None else float(m.momentum), "affine": bool(m.affine),
            "track_running_stats": bool(m.track_running_stats)}


def _layer_norm(m):
    spec = {"normalized_shape": [int(d) for d in m.normalized_shape], "eps": float(m.eps),
            "elementwise_affine": bool(m.elementwise_affine)}
    if m.elementwise_affine and m.bias is None:  # torch >= 2.1: LayerNorm(bias=False)
        spec["bias"] = False
    return spec


def _embedding(m):
    if m.max_norm is not None:
        raise ExportError(f"Embedding: max_norm must be None (it renormalises the weights in place), got {m.max_norm!r}")
    if m.scale_grad_by_freq:
        raise ExportError("Embedding: scale_grad_by_freq must be False (it mixes samples)")
    return {"num_embeddings": int(m.num_embeddings), "embedding_dim": int(m.embedding_dim),
            "padding_idx": None if m.padding_idx is None else int(m.padding_idx), "sparse": bool(m.sparse)}


def _adaptive_size(value):
    """output_size: int, or a list whose None entries keep the input's size."""
    if isinstance(value, (tuple, list)):
        return [None if v is None else int(v) for v in value]
    return int(value)


def _adaptive_max(m):
    if m.return_indices:
        raise ExportError(f"{type(m).__name__}: return_indices must be False")
    return {"output_size": _adaptive_size(m.output_size)}


def _unflatten(m):
    sizes = m.unflattened_size
    if any(isinstance(s, (tuple, list)) for s in sizes):
        raise ExportError("Unflatten: named shapes are not supported, give unflattened_size as a tuple of ints")
    return {"dim": int(m.dim), "unflattened_size": [int(s) for s in sizes]}


# Exact classes only: a subclass may override forward() and would be exported wrongly.
_LAYERS = {
    nn.Linear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose,
    nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
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
    nn.BatchNorm1d: _channel_norm,
    nn.BatchNorm2d: _channel_norm,
    nn.BatchNorm3d: _channel_norm,
    nn.InstanceNorm1d: _channel_norm,
    nn.InstanceNorm2d: _channel_norm,
    nn.InstanceNorm3d: _channel_norm,
    nn.LayerNorm: _layer_norm,
    nn.GroupNorm: lambda m: {"num_groups": int(m.num_groups), "num_channels": int(m.num_channels), "eps": float(m.eps),
                             "affine": bool(m.affine)},
    nn.Embedding: _embedding,
    nn.AdaptiveAvgPool1d: lambda m: {"output_size": _adaptive_size(m.output_size)},
    nn.AdaptiveAvgPool2d: lambda m: {"output_size": _adaptive_size(m.output_size)},
    nn.AdaptiveAvgPool3d: lambda m: {"output_size": _adaptive_size(m.output_size)},
    nn.AdaptiveMaxPool1d: _adaptive_max,
    nn.AdaptiveMaxPool2d: _adaptive_max,
    nn.AdaptiveMaxPool3d: _adaptive_max,
    nn.Unflatten: _unflatten,
}


def _layers(seq, path, seen):
    layers = []
    for name, m in seq._modules.items():  # not named_children(): it silently skips repeated modules
        where = f"{path}.{name}" if path else name
        # A module used twice is fine without parameters (a shared ReLU) but would tie parameters.
        if id(m) in seen and any(True for _ in m.parameters()):
            raise ExportError(f"module {where} ({type(m).__name__}) appears twice in the model: shared parameters "
                            f"(tied weights) are not supported")
        seen.add(id(m))
        if type(m) is nn.Sequential:
            layers.append({"type": "Sequential", "layers": _layers(m, where, seen)})
            continue
        if type(m) is Residual:
            spec = {"type": "Residual", "block": _one(m.block, where, "block", seen)}
            if m.shortcut is not None:
                spec["shortcut"] = _one(m.shortcut, where, "shortcut", seen)
            layers.append(spec)
            continue
        if type(m) is Parallel:
            layers.append({"type": "Parallel", "combine": m.combine, "dim": m.dim, "branches": _layers(m, where, seen)})
            continue
        describe = _LAYERS.get(type(m))
        if describe is None:
            supported = ", ".join(sorted(c.__name__ for c in _LAYERS)) + ", Sequential"
            raise ExportError(f"module {where} is a {type(m).__module__}.{type(m).__name__}, which jacobian-wasm "
                            f"does not support; supported: {supported}")
        try:
            layers.append({"type": type(m).__name__, **describe(m)})
        except ExportError as e:
            raise ExportError(f"module {where}: {e}") from None
    return layers


def model_spec(model):
    """The JSON-serialisable spec of ``model`` (an ``nn.Sequential``)."""
    if type(model) is not nn.Sequential:
        what = type(model).__name__
        if isinstance(model, Mapping) and all(torch.is_tensor(v) for v in model.values()):
            raise ExportError(f"export_model expects a torch.nn.Sequential, got a state_dict ({what} of {len(model)} tensors), "
                              f"which holds the weights but not the layers: {_HINT}")
        if isinstance(model, nn.Module):
            raise ExportError(f"export_model expects a torch.nn.Sequential, got a {type(model).__module__}.{what}: build the "
                              f"model as nn.Sequential (nested; Residual and Parallel from this file for branches)")
        raise ExportError(f"export_model expects a torch.nn.Sequential, got {what}: {_HINT}")
    return {"format": "torch.nn.Sequential", "layers": _layers(model, "", set())}


def save_safetensors(tensors, path):
    """Write ``{name: tensor}`` as a safetensors file, every tensor as little-endian F32."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        # np.array, not np.ascontiguousarray: that makes 0-d tensors (num_batches_tracked) 1-d
        a = np.array(t.detach().cpu().numpy() if torch.is_tensor(t) else t, dtype="<f4", order="C")
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
    buffers = {n for n, _ in model.named_buffers()}  # running statistics of the normalisation layers
    if [k for k in state.keys() if k not in buffers] != names:  # tied parameters would need a place in the format first
        extra = sorted(set(state.keys()) - set(names) - buffers)
        raise ExportError(f"the model's state_dict holds tensors that are not parameters or buffers: {extra}")
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
    if not os.path.isfile(source):
        raise ExportError(f"{source}: no such file" + (" (it is a directory)" if os.path.isdir(source) else ""))
    try:
        try:
            return torch.load(source, map_location="cpu", weights_only=False)
        except TypeError as e:  # torch < 1.13 has no weights_only
            if "weights_only" not in str(e):
                raise
            return torch.load(source, map_location="cpu")
    except (AttributeError, ModuleNotFoundError) as e:
        # Unpickling looks the model's class up by module and name: a class defined in the training
        # script lives in that script's __main__, not in this one's.
        missing = re.match(r"Can't get attribute '([^']+)' on <module '([^']+)'", str(e))
        if missing:
            where = "the script that saved it" if missing[2] == "__main__" else f"module {missing[2]}"
            why = f"its class {missing[1]} is defined in {where}, and unpickling needs that class importable here"
        elif isinstance(e, ModuleNotFoundError):
            why = f"it needs module {e.name}, which cannot be imported here"
        else:
            why = str(e)
        raise ExportError(f"{source}: cannot load the model: {why}: {_HINT}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{source}: not a file torch.save wrote, or a damaged one: {first}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export a torch.nn.Sequential to a JSON spec + safetensors weights.")
    ap.add_argument("model", help="a file saved with torch.save(model), or package.module:factory")
    ap.add_argument("spec", help="where to write the JSON spec")
    ap.add_argument("weights", help="where to write the .safetensors weights")
    a = ap.parse_args(argv)
    try:
        model = _load(a.model)
        if isinstance(model, Mapping):
            tensors = sum(1 for v in model.values() if torch.is_tensor(v))
            what = (f"a state_dict ({len(model)} tensors)" if tensors == len(model)
                    else f"a {type(model).__name__} (keys {', '.join(map(str, list(model)[:5]))})")
            raise ExportError(f"{a.model} holds {what}, not the model: jacobian-wasm needs its layers too: {_HINT}")
        spec = export_model(model, a.spec, a.weights)
    except (ExportError, OSError) as e:
        # A mistake in what was given, not in this script: one line, as the command line does.
        message = str(e) if isinstance(e, ExportError) else f"{e.filename or a.model}: {e.strerror or e}"
        print(f"export_torch.py: {' '.join(message.split())}", file=sys.stderr)
        return 2
    print(f"wrote {a.spec} ({len(spec['layers'])} top-level layers) and {a.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
