"""Per-epoch training records returned by Network.fit, and their plot."""
import json


class History:
    """What happened in each epoch of `Network.fit`.

    Each epoch is one dict in `records`, with the keys ``epoch``, ``loss``,
    ``lr`` (the epoch's learning rate), ``seconds`` and, for classifiers,
    ``accuracy``; with
    validation data also ``val_loss`` (and ``val_accuracy``). ``loss`` and
    ``accuracy`` are running means over the epoch's mini-batches, each
    measured before its update. ``cmlp train`` adds ``test_loss`` and
    ``test_accuracy`` (the test set, which it never uses to decide).
    Read a column as ``history["loss"]`` or
    ``history.loss`` (a list over epochs).
    """

    def __init__(self):
        self.records = []
        self.best_epoch = None     # set by fit(early_stopping=True)

    def append(self, record):
        self.records.append(dict(record))

    def to_json(self):
        """The records as JSON text (what models and checkpoints store)."""
        return json.dumps(self.records)

    @classmethod
    def from_json(cls, text):
        """A History from `to_json` text; ValueError if it is not that."""
        try:
            records = json.loads(text)
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("not a list of epoch records")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"damaged history: {exc}") from None
        history = cls()
        for record in records:
            history.append(record)
        return history

    def keys(self):
        return list(self.records[0]) if self.records else []

    def __getitem__(self, key):
        if self.records and key not in self.records[0]:
            raise KeyError(f"{key!r}; history has {self.keys()}")
        return [r[key] for r in self.records]

    def __getattr__(self, key):
        if key.startswith("_") or key in ("records", "best_epoch"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"History has no column {key!r}; it has {self.keys()}") from None

    def __len__(self):
        return len(self.records)

    def __repr__(self):
        return f"History({len(self)} epochs, columns {self.keys()})"

    def plot(self, path, title=None):
        """Write a PNG of the curves to `path`: loss, accuracy (if recorded)
        and learning rate per epoch, with validation curves beside the
        training ones. Needs matplotlib (``pip install "cmlp[plot]"``).
        Returns the path."""
        if not self.records:
            raise ValueError("the history is empty: nothing to plot")
        Figure, FigureCanvasAgg = _matplotlib()
        epochs = self["epoch"]
        panels = [("loss", "loss")]
        if any(key in self.records[0] for key in ("accuracy", "val_accuracy", "test_accuracy")):
            panels.append(("accuracy", "accuracy"))
        panels.append(("lr", "learning rate"))
        figure = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
        FigureCanvasAgg(figure)
        for axis, (key, label) in zip(figure.subplots(1, len(panels), squeeze=False)[0],
                                      panels):
            for column, style, name in ((key, "-o", "train"), ("val_" + key, "--s", "validation"),
                                        ("test_" + key, ":^", "test")):
                if column in self.records[0]:
                    axis.plot(epochs, self[column], style, markersize=3, label=name)
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            if key == "lr" and min(self["lr"]) > 0:
                axis.set_yscale("log")
            elif key != "lr":
                axis.legend()
            axis.grid(alpha=0.3)
        if title:
            figure.suptitle(title)
        figure.savefig(path, dpi=100)
        return path


def _matplotlib():
    """matplotlib's Figure and Agg canvas (no pyplot: no global state, no GUI)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "cmlp[plot]" '
                          "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg
