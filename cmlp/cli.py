"""The `cmlp` command: `cmlp train` trains an MLP on MNIST with the C engine;
`cmlp plot` draws the training curves a checkpoint or saved model holds.

Every error is one line on stderr and exit code 2.
"""
import argparse
import sys
import time

from cmlp import __version__
from cmlp._layout import ACTIVATIONS
from cmlp._validation import check_number
from cmlp.callbacks import Callback, Checkpoint
from cmlp.datasets import DownloadError, load_mnist
from cmlp.network import Network, load_history
from cmlp.optimizers import NAMES as OPTIMIZERS
from cmlp.schedules import KINDS as SCHEDULES

# Named recipes: defaults that explicit options still override. "best" was
# chosen by measurement on MNIST (README table): seeds 0, 1, 2 gave 0.9867,
# 0.9858, 0.9851 test accuracy in 32 to 39 s wall time on 2 cores, loading
# included.
PRESETS = {
    "best": {"hidden": [512, 256], "optimizer": "adam", "lr": 0.001, "schedule": "cosine",
             "epochs": 15, "batch_size": 128, "weight_decay": 1e-4, "dropout": 0.2},
}

# Options a resumed run takes from its checkpoint, not from the command line.
RUN_OPTIONS = ("hidden", "activation", "epochs", "batch_size", "lr", "dtype", "seed",
               "standardize", "optimizer", "momentum", "weight_decay", "dropout", "schedule",
               "early_stopping", "patience")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def _hidden(text):
    parts = [part.strip() for part in text.split(",")]
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated integers, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be >= 1, got {text!r}")
    return sizes


def _checked(kind, **bounds):
    """An argparse type: `kind` of the text, checked by the one number check."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an int' if kind is int else 'a number'}, got {text!r}") from None
        try:
            return check_number(value, "it", integer=kind is int, **bounds)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("it must", "must")) from None
    return parse


def _positive(kind):
    return _checked(kind, low=0, low_open=True)


_rate = _checked(float, low=0, high=1, high_open=True)
_non_negative = _checked(float, low=0)


def build_parser():
    parser = _Parser(prog="cmlp", description="A C-level multilayer perceptron.")
    parser.add_argument("--version", action="version", version=f"cmlp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train = commands.add_parser(
        "train", help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST with mini-batch SGD, momentum, Nesterov or Adam. "
                    "Defaults: 784-128-64-10 ReLU, sgd, lr 0.1, batch 128, 10 epochs, "
                    "float32.")
    train.add_argument("--data", metavar="DIR",
                       help="directory of the four MNIST IDX files (default: $CMLP_DATA, "
                            "else a cache directory, downloading there)")
    train.add_argument("--hidden", type=_hidden, default=[128, 64], metavar="128,64",
                       help="hidden layer widths (default 128,64)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                       help="activation of the hidden layers (default relu)")
    train.add_argument("--epochs", type=_checked(int, low=1), default=10,
                       help="passes over the training set (with --resume: extends the run)")
    train.add_argument("--batch-size", type=_positive(int), default=128,
                       help="rows per mini-batch (default 128; with --mpi, the global batch)")
    train.add_argument("--lr", type=_positive(float), default=None,
                       help="learning rate (default 0.1 for sgd/momentum/nesterov, 0.001 for adam)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                       help="optimizer (default sgd)")
    train.add_argument("--momentum", type=_checked(float, low=0, high=1, high_open=True),
                       default=None,
                       help="momentum for the momentum/nesterov optimizers (default 0.9)")
    train.add_argument("--weight-decay", type=_non_negative, default=0.0, metavar="L2",
                       help="L2 coefficient on the weights (default 0)")
    train.add_argument("--dropout", type=_rate, default=0.0, metavar="RATE",
                       help="inverted dropout after every hidden layer while training "
                            "(default 0: off)")
    train.add_argument("--schedule", choices=sorted(SCHEDULES), default="constant",
                       help="learning-rate schedule over the epochs")
    train.add_argument("--early-stopping", action="store_true",
                       help="hold out 10%% of the training data and stop when its loss has not "
                            "improved for --patience epochs, keeping the best weights")
    train.add_argument("--patience", type=_positive(int), default=5,
                       help="epochs without improvement before --early-stopping stops "
                            "(default 5)")
    train.add_argument("--checkpoint", metavar="PATH",
                       help="write a resumable checkpoint after every epoch")
    train.add_argument("--preset", choices=sorted(PRESETS),
                       help="a measured recipe (best: 784-512-256-10, adam, cosine, dropout 0.2, "
                            "15 epochs); "
                            "options given explicitly still apply")
    train.add_argument("--resume", metavar="PATH",
                       help="continue the run a --checkpoint file holds, with its options "
                            "(only --epochs may change, to extend it)")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="dtype of the parameters and all computation (default float32)")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the initial weights, the batch order and dropout (default 0)")
    train.add_argument("--save", metavar="PATH",
                       help="write the trained model (.npz), with its training history")
    train.add_argument("--plot", metavar="PATH",
                       help="write a PNG of the loss/accuracy/lr curves (needs matplotlib)")
    train.add_argument("--progress", action="store_true",
                       help="show a progress bar within each epoch (needs tqdm)")
    train.add_argument("--threads", type=_positive(int), default=None, metavar="N",
                       help="worker threads that split each batch (default: the cores this "
                            "process may use, within OPENBLAS_NUM_THREADS/OMP_NUM_THREADS)")
    train.add_argument("--mpi", action="store_true",
                       help="train data-parallel over the ranks of an MPI job: run as "
                            "'mpiexec -n N cmlp train --mpi ...'; every rank loads the data, "
                            "--batch-size is the global batch, rank 0 alone prints and writes "
                            "files (needs the mpi extra)")
    plot = commands.add_parser(
        "plot", help="draw the training curves of a checkpoint or saved model",
        description="Write a PNG of the per-epoch curves stored in a file from "
                    "'cmlp train --checkpoint' or 'cmlp train --save' (needs matplotlib).")
    plot.add_argument("model", metavar="FILE", help="a checkpoint or saved model (.npz)")
    plot.add_argument("-o", "--output", metavar="PNG", default=None,
                      help="where to write the image (default: FILE with .png)")
    export = commands.add_parser(
        "export", help="write a saved model as an ONNX graph",
        description="Write a model saved by 'cmlp train --save' (or Network.save) as an "
                    "ONNX graph computing its class probabilities (needs the onnx "
                    "package: pip install \"cmlp[onnx]\").")
    export.add_argument("model", metavar="MODEL", help="a saved model or checkpoint (.npz)")
    export.add_argument("-o", "--output", metavar="ONNX", default=None,
                        help="where to write the graph (default: MODEL with .onnx)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on raw [0, 1] pixels instead of pixels standardized by "
                            "the training set's mean and std")
    return parser


class TestSetMetrics(Callback):
    """Adds test_loss and test_accuracy to each epoch's record (the CLI's
    per-epoch report; never used for any decision)."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def on_epoch_end(self, run, record):
        scores = run.network.evaluate(self.X, self.y)
        run.history.records[-1].update({"test_" + key: value for key, value in scores.items()})
        return False


class Report(Callback):
    """One line per epoch: loss, train accuracy, held-out accuracy, lr, time."""

    def __init__(self, held_out, epochs):
        self.held_out, self.epochs = held_out, epochs

    def on_epoch_end(self, run, record):
        r = run.history.records[-1]
        print(f"epoch {r['epoch']:>{len(str(self.epochs))}}/{self.epochs}  loss {r['loss']:.4f}  "
              f"train acc {r['accuracy']:.4f}  {self.held_out} acc "
              f"{r[self.held_out + '_accuracy']:.4f}  lr {r['lr']:.3g}  {r['seconds']:.2f}s",
              flush=True)
        return False


def resume_options(args, explicit, comm=None):
    """Load the checkpoint of --resume: (network, fit kwargs), with args set
    to the run's options. Options given again must not conflict with it."""
    resumed, fit_kwargs = Network.load_checkpoint(args.resume, comm=comm)
    saved = fit_kwargs.pop("checkpoint_metadata").get("cli")
    if saved is None:
        raise ValueError(f"{args.resume!r} was not written by 'cmlp train --checkpoint'")
    conflicts = sorted(name for name in RUN_OPTIONS
                       if name in explicit and name != "epochs"
                       and saved.get(name, getattr(args, name)) != getattr(args, name))
    if conflicts:
        flags = ", ".join("--" + name.replace("_", "-") for name in conflicts)
        raise _UsageError(f"cmlp train: {flags} differ from the run in {args.resume}; a resumed "
                          "run keeps its options (only --epochs may extend it)")
    if "epochs" in explicit:
        if args.epochs < fit_kwargs["initial_epoch"]:
            raise _UsageError(f"cmlp train: --epochs {args.epochs} is fewer than the "
                              f"{fit_kwargs['initial_epoch']} epochs the run has done")
        fit_kwargs["epochs"] = saved["epochs"] = args.epochs
    for name in RUN_OPTIONS:
        setattr(args, name, saved.get(name, getattr(args, name)))
    args.checkpoint = args.checkpoint or args.resume
    args.data = args.data or saved["data"]
    return resumed, fit_kwargs


def train(args, explicit=()):
    start = time.perf_counter()
    resumed = fit_kwargs = None
    comm = None
    if args.mpi:
        from cmlp import distributed
        comm = distributed.mpi().COMM_WORLD
        if args.progress:
            raise _UsageError("cmlp train: --progress does not work with --mpi")
    lead = comm is None or comm.rank == 0     # the rank that prints and writes files
    say = print if lead else (lambda *a, **k: None)
    if args.resume:
        resumed, fit_kwargs = resume_options(args, explicit, comm)

    X_train, y_train, X_test, y_test = load_mnist(args.data)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    net = resumed or Network([X_train.shape[1], *args.hidden, n_classes],
                             activation=args.activation, output="softmax",
                             dtype=args.dtype, seed=args.seed, dropout=args.dropout)
    if net.sizes != (X_train.shape[1], *args.hidden, n_classes):
        raise ValueError(f"the checkpoint's network {list(net.sizes)} does not fit this data")
    say(f"{net}: {X_train.shape[0]} train, {X_test.shape[0]} test samples "
          f"(loaded in {time.perf_counter() - start:.1f}s)", flush=True)

    # Standardizing the inputs (one scalar mean and std from the training set)
    # speeds up SGD; afterwards it is folded into the first layer, so the
    # trained (and saved) network takes raw [0, 1] pixels. Checkpoints hold
    # the network as it trains, on standardized pixels.
    mean, std = (float(X_train.mean()), float(X_train.std())) if args.standardize else (0.0, 1.0)

    def scale(X):
        return ((X - mean) / std).astype(net.dtype) if args.standardize else X

    # Per-epoch accuracy on the test set, or, with early stopping (which must
    # not look at the test set), on 10% of the training set held out.
    held_out = "val" if args.early_stopping else "test"
    callbacks = [] if args.early_stopping else [TestSetMetrics(scale(X_test), y_test)]
    cli = {**{name: getattr(args, name) for name in RUN_OPTIONS}, "data": args.data}
    checkpoint = Checkpoint(args.checkpoint, {"cli": cli}) if args.checkpoint else None
    if checkpoint is not None:
        callbacks.append(checkpoint)
    if lead:
        callbacks.append(Report(held_out, args.epochs))
    if fit_kwargs is None:
        fit_kwargs = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          optimizer=args.optimizer, momentum=args.momentum,
                          weight_decay=args.weight_decay, schedule=args.schedule,
                          early_stopping=args.early_stopping, patience=args.patience,
                          validation_split=0.1 if args.early_stopping else 0.0)
    else:
        del fit_kwargs["checkpoint"]
        say(f"resuming {args.resume} after epoch {fit_kwargs['initial_epoch']}", flush=True)
    if args.plot:
        load_plotting()          # fail now, not after the training
    try:
        history = net.fit(scale(X_train), y_train, verbose=0, progress=args.progress,
                          callbacks=callbacks, comm=comm, threads=args.threads, **fit_kwargs)
    except KeyboardInterrupt:
        if checkpoint is not None and checkpoint.written:
            say(f"cmlp: interrupted; {args.checkpoint} holds every finished batch: continue "
                  f"with 'cmlp train --resume {args.checkpoint}'", file=sys.stderr)
        elif checkpoint is not None:
            say("cmlp: interrupted before training began; no checkpoint written",
                  file=sys.stderr)
        else:
            say("cmlp: interrupted; nothing was saved (with --checkpoint PATH, an "
                "interrupted run is saved and continues with --resume PATH)", file=sys.stderr)
        raise
    if args.early_stopping and history.best_epoch is not None:
        say(f"kept the weights of epoch {history.best_epoch} (best {held_out} loss)")
    if args.standardize:
        net.fold_input_standardization(mean, std)
    if args.save and lead:
        net.save(args.save, history)
        say(f"saved {args.save}")
    if args.plot and lead:
        history.plot(args.plot, title=str(net))
        say(f"plotted {args.plot}")
    say(f"test accuracy: {net.evaluate(X_test, y_test, threads=args.threads)['accuracy']:.4f}")
    return 0


def load_plotting():
    from cmlp.history import _matplotlib
    _matplotlib()


def plot(args):
    history = load_history(args.model)
    output = args.output or (args.model[:-4] if args.model.endswith(".npz") else args.model) + ".png"
    history.plot(output, title=args.model)
    print(f"plotted {len(history)} epochs of {args.model} to {output}")
    return 0


def export(args):
    net = Network.load(args.model)
    stem = args.model[:-4] if args.model.endswith(".npz") else args.model
    output = args.output or stem + ".onnx"
    net.to_onnx(output)
    print(f"exported {net} to {output}")
    return 0


def _parse(parser, argv):
    # Unknown options are the subcommand's mistake: point at its help.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        prog = f"cmlp {args.command}"
        raise _UsageError(f"{prog}: unrecognized arguments: {' '.join(unknown)} "
                          f"(see '{prog} --help')")
    return args


def parse_args(argv=None):
    parser = build_parser()
    args = _parse(parser, argv)
    if getattr(args, "preset", None):
        # Re-parse with the preset as defaults, so explicit options win.
        _train_parser(parser).set_defaults(**PRESETS[args.preset])
        args = _parse(parser, argv)
    return args


def _train_parser(parser):
    return parser._subparsers._group_actions[0].choices["train"]


def given_options(argv=None):
    """The names of the train options given on the command line
    (abbreviations are off, so each appears under one of its own names)."""
    tokens = sys.argv[1:] if argv is None else argv
    return {action.dest for action in _train_parser(build_parser())._actions
            if any(token == name or token.startswith(name + "=")
                   for token in tokens for name in action.option_strings)}


def main(argv=None):
    try:
        args = parse_args(argv)
        if args.command == "plot":
            return plot(args)
        if args.command == "export":
            return export(args)
        return train(args, given_options(argv))
    except _UsageError as exc:
        print(exc, file=sys.stderr)
    except KeyboardInterrupt:
        print("cmlp: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        print(f"cmlp: error: {_in_cli_terms(exc)}", file=sys.stderr)
    except (OSError, ValueError, TypeError) as exc:
        print(f"cmlp: error: {exc}", file=sys.stderr)
        if isinstance(exc, DownloadError):
            print("cmlp: offline? point --data DIR (or $CMLP_DATA) at a directory holding the "
                  "four MNIST IDX .gz files", file=sys.stderr)
    return 2


# A missing extra, as the option that needs it ("progress=True" -> "--progress").
_CLI_TERMS = {"progress=True": "--progress", "training with comm=": "--mpi",
              "plotting needs": "--plot needs"}


def _in_cli_terms(exc):
    text = str(exc)
    for python, option in _CLI_TERMS.items():
        text = text.replace(python, option)
    return text


if __name__ == "__main__":
    sys.exit(main())
