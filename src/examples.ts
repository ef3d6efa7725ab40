/**
 * The public benchmark cases' networks (docs/bench_cases.md), for the demo and the
 * benchmarks.
 */
import { AvgPool3d, MaxPool2d } from "./layers/pooling.ts";
import { Conv2d, Conv3d } from "./layers/conv.ts";
import { ReLU } from "./layers/activation.ts";
import { Flatten } from "./layers/reshape.ts";
import { Linear } from "./layers/linear.ts";
import { Sequential } from "./layers/sequential.ts";

/** `seed3d`: the seed's own example; per-sample input (1, 6, 6, 6), one output per sample. */
export function seedNetwork(): Sequential {
  return new Sequential(
    new Conv3d(1, 2, 2, { bias: false }),
    new ReLU(),
    new Conv3d(2, 1, 2),
    new ReLU(),
    new AvgPool3d(4),
    new Flatten({ startDim: 1 }),
  );
}

/** `mlp`: an MNIST-sized MLP; per-sample input (784,), 10 classes. */
export function mlpNetwork(): Sequential {
  return new Sequential(new Linear(784, 256), new ReLU(), new Linear(256, 128), new ReLU(), new Linear(128, 10));
}

/** `cnn`: a CIFAR-sized CNN; per-sample input (3, 32, 32), 10 classes. */
export function cnnNetwork(): Sequential {
  return new Sequential(
    new Conv2d(3, 16, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(16, 32, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Flatten(),
    new Linear(32 * 8 * 8, 10),
  );
}
