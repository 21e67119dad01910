"""The `cmlp` command: `cmlp train` trains an MLP on MNIST with the C engine.

Every error is one line on stderr and exit code 2.
"""
import argparse
import sys
import time

import numpy as np

from cmlp.datasets import load_mnist
from cmlp._layout import ACTIVATIONS
from cmlp.network import Network


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _hidden(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated integers, got {text!r}")
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be >= 1, got {text!r}")
    return sizes


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not value > 0 or not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def build_parser():
    parser = _Parser(prog="cmlp", description="A C-level multilayer perceptron.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train = commands.add_parser(
        "train", help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST with mini-batch SGD. Defaults: 784-128-64-10 ReLU, "
                    "lr 0.1, batch 128, 10 epochs, float32.")
    train.add_argument("--data", metavar="DIR",
                       help="directory of the four MNIST IDX files (default: $CMLP_DATA, "
                            "else a cache directory, downloading there)")
    train.add_argument("--hidden", type=_hidden, default=[128, 64], metavar="128,64",
                       help="hidden layer widths (default 128,64)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--epochs", type=_non_negative_int, default=10)
    train.add_argument("--batch-size", type=_positive(int), default=128)
    train.add_argument("--lr", type=_positive(float), default=0.1)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", metavar="PATH", help="write the trained model (.npz)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on raw [0, 1] pixels instead of pixels standardized by "
                            "the training set's mean and std")
    return parser


def train(args):
    start = time.perf_counter()
    X_train, y_train, X_test, y_test = load_mnist(args.data)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    net = Network([X_train.shape[1], *args.hidden, n_classes], activation=args.activation,
                  output="softmax", dtype=args.dtype, seed=args.seed)
    print(f"{net}: {X_train.shape[0]} train, {X_test.shape[0]} test samples "
          f"(loaded in {time.perf_counter() - start:.1f}s)", flush=True)

    # Standardizing the inputs (one scalar mean and std from the training set)
    # speeds up SGD; afterwards it is folded into the first layer, so the
    # trained (and saved) network takes raw [0, 1] pixels.
    mean, std = (float(X_train.mean()), float(X_train.std())) if args.standardize else (0.0, 1.0)
    scale = lambda X: ((X - mean) / std).astype(net.dtype) if args.standardize else X

    def report(history):
        r = history.records[-1]
        print(f"epoch {r['epoch']:>{len(str(args.epochs))}}/{args.epochs}  loss {r['loss']:.4f}  "
              f"train acc {r['accuracy']:.4f}  test acc {r['val_accuracy']:.4f}  "
              f"{r['seconds']:.2f}s", flush=True)

    net.fit(scale(X_train), y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            validation_data=(scale(X_test), y_test), verbose=0, on_epoch_end=report)
    if args.standardize:
        net.fold_input_standardization(mean, std)
    if args.save:
        net.save(args.save)
        print(f"saved {args.save}")
    print(f"test accuracy: {net.evaluate(X_test, y_test)['accuracy']:.4f}")
    return 0


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return train(args)
    except _UsageError as exc:
        print(f"{exc} (see 'cmlp train --help')", file=sys.stderr)
    except KeyboardInterrupt:
        print("cmlp: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError) as exc:
        print(f"cmlp: error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
