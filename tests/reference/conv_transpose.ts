/**
 * ConvTranspose1d/2d/3d in the float64 reference: plain loops, one sample, written from
 * PyTorch's definition (every input element scatters its kernel-weighted copy into the output
 * at o = i·stride − padding + k·dilation; output_padding only lengthens the far end) and
 * sharing nothing with src/. model.ts hooks it into parsing, parameters and the forward pass.
 */
import type { Params } from "./model.ts";

/** A ConvTranspose layer of the flattened model. */
export interface ConvTransposeLayer {
  type: "ConvTranspose";
  path: string;
  dims: number;
  inChannels: number;
  outChannels: number;
  kernel: number[];
  stride: number[];
  padding: number[];
  outputPadding: number[];
  dilation: number[];
  groups: number;
  bias: boolean;
}

const allowed = [
  "in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation",
  "padding_mode",
];

function integer(where: string, key: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new TypeError(`${where}: ${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function sizes(where: string, key: string, value: unknown, dims: number, fallback: number | undefined, min: number): number[] {
  if (value === undefined || value === null) {
    if (fallback === undefined) throw new TypeError(`${where}: ${key} is required`);
    return new Array(dims).fill(fallback);
  }
  if (typeof value === "number") return new Array(dims).fill(integer(where, key, value, min));
  if (Array.isArray(value) && (value.length === dims || value.length === 1)) {
    const ints = value.map((v) => integer(where, key, v, min));
    return ints.length === dims ? ints : new Array(dims).fill(ints[0]);
  }
  throw new TypeError(`${where}: ${key} must be an int or a list of ${dims} ints, got ${JSON.stringify(value)}`);
}

/** Parses `{"type": "ConvTranspose<dims>d", ...}` with PyTorch's defaults and argument checks. */
export function parseConvTranspose(spec: Record<string, unknown>, path: string, dims: number): ConvTransposeLayer {
  const where = `layer ${path} (${spec.type})`;
  for (const key of Object.keys(spec)) {
    if (key !== "type" && !allowed.includes(key)) throw new TypeError(`${where}: unknown argument ${key}`);
  }
  const inChannels = integer(where, "in_channels", spec.in_channels, 1);
  const outChannels = integer(where, "out_channels", spec.out_channels, 1);
  const groups = spec.groups === undefined ? 1 : integer(where, "groups", spec.groups, 1);
  if (inChannels % groups !== 0 || outChannels % groups !== 0) {
    throw new RangeError(`${where}: groups=${groups} must divide in_channels=${inChannels} and out_channels=${outChannels}`);
  }
  if (spec.padding_mode !== undefined && spec.padding_mode !== "zeros") {
    throw new TypeError(`${where}: padding_mode must be "zeros", got ${JSON.stringify(spec.padding_mode)}`);
  }
  if (spec.bias !== undefined && typeof spec.bias !== "boolean") throw new TypeError(`${where}: bias must be true or false`);
  const stride = sizes(where, "stride", spec.stride, dims, 1, 1);
  const dilation = sizes(where, "dilation", spec.dilation, dims, 1, 1);
  const outputPadding = sizes(where, "output_padding", spec.output_padding, dims, 0, 0);
  outputPadding.forEach((p, i) => {
    if (p >= stride[i] && p >= dilation[i]) {
      throw new RangeError(`${where}: output_padding ${p} must be smaller than stride ${stride[i]} or dilation ${dilation[i]}`);
    }
  });
  return {
    type: "ConvTranspose",
    path,
    dims,
    inChannels,
    outChannels,
    kernel: sizes(where, "kernel_size", spec.kernel_size, dims, undefined, 1),
    stride,
    padding: sizes(where, "padding", spec.padding, dims, 0, 0),
    outputPadding,
    dilation,
    groups,
    bias: spec.bias ?? true,
  } as ConvTransposeLayer;
}

/** The layer's parameters in named_parameters() order: weight (C_in, C_out/groups, k...), bias (C_out). */
export function convTransposeParameters(layer: ConvTransposeLayer): { name: string; shape: number[] }[] {
  const list = [{ name: `${layer.path}.weight`, shape: [layer.inChannels, layer.outChannels / layer.groups, ...layer.kernel] }];
  if (layer.bias) list.push({ name: `${layer.path}.bias`, shape: [layer.outChannels] });
  return list;
}

/** One sample through the layer: x of shape [C_in, ...spatial] → [C_out, ...PyTorch's output size]. */
export function convTranspose(
  layer: ConvTransposeLayer,
  params: Params,
  x: Float64Array,
  shape: number[],
): { output: Float64Array; shape: number[] } {
  const where = `layer ${layer.path} (ConvTranspose${layer.dims}d)`;
  if (shape.length !== layer.dims + 1 || shape[0] !== layer.inChannels) {
    throw new RangeError(`${where}: expected a per-sample input of shape [${layer.inChannels}, ${new Array(layer.dims).fill("*").join(", ")}], got [${shape}]`);
  }
  const lift = (values: number[], fill: number) => [...new Array(3 - values.length).fill(fill), ...values];
  const size = lift(shape.slice(1), 1);
  const k = lift(layer.kernel, 1);
  const s = lift(layer.stride, 1);
  const p = lift(layer.padding, 0);
  const op = lift(layer.outputPadding, 0);
  const d = lift(layer.dilation, 1);
  const o = size.map((n, i) => (n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1);
  if (o.some((n) => n < 1)) throw new RangeError(`${where}: output size [${o}] is too small`);
  const weight = params.get(`${layer.path}.weight`)!;
  const bias = layer.bias ? params.get(`${layer.path}.bias`)! : undefined;
  const inPerGroup = layer.inChannels / layer.groups;
  const outPerGroup = layer.outChannels / layer.groups;
  const plane = o[0] * o[1] * o[2];
  const y = new Float64Array(layer.outChannels * plane);
  if (bias) for (let co = 0; co < layer.outChannels; co++) y.fill(bias[co], co * plane, (co + 1) * plane);
  for (let ci = 0; ci < layer.inChannels; ci++) {
    const group = Math.floor(ci / inPerGroup);
    for (let i0 = 0; i0 < size[0]; i0++) {
      for (let i1 = 0; i1 < size[1]; i1++) {
        for (let i2 = 0; i2 < size[2]; i2++) {
          const v = x[((ci * size[0] + i0) * size[1] + i1) * size[2] + i2];
          for (let c = 0; c < outPerGroup; c++) {
            const co = group * outPerGroup + c;
            for (let k0 = 0; k0 < k[0]; k0++) {
              const o0 = i0 * s[0] - p[0] + k0 * d[0];
              if (o0 < 0 || o0 >= o[0]) continue;
              for (let k1 = 0; k1 < k[1]; k1++) {
                const o1 = i1 * s[1] - p[1] + k1 * d[1];
                if (o1 < 0 || o1 >= o[1]) continue;
                for (let k2 = 0; k2 < k[2]; k2++) {
                  const o2 = i2 * s[2] - p[2] + k2 * d[2];
                  if (o2 < 0 || o2 >= o[2]) continue;
                  const w = weight[(((ci * outPerGroup + c) * k[0] + k0) * k[1] + k1) * k[2] + k2];
                  y[((co * o[0] + o0) * o[1] + o1) * o[2] + o2] += w * v;
                }
              }
            }
          }
        }
      }
    }
  }
  return { output: y, shape: [layer.outChannels, ...o.slice(3 - layer.dims)] };
}
