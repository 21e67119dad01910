"""Per-epoch training records returned by Network.fit."""


class History:
    """What happened in each epoch of `Network.fit`.

    Each epoch is one dict in `records`, with the keys ``epoch``, ``loss``,
    ``lr`` (the epoch's learning rate), ``seconds`` and, for classifiers,
    ``accuracy``; with
    validation data also ``val_loss`` (and ``val_accuracy``). ``loss`` and
    ``accuracy`` are running means over the epoch's mini-batches, each
    measured before its update. Read a column as ``history["loss"]`` or
    ``history.loss`` (a list over epochs).
    """

    def __init__(self):
        self.records = []
        self.best_epoch = None     # set by fit(early_stopping=True)

    def append(self, record):
        self.records.append(dict(record))

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
