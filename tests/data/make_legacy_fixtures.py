"""Wrote tests/data/legacy_*.npz and the expected results with the code of commit
c989f6d (before issue 8), so later versions prove they still read old files.
Kept for the record; rerunning it with newer code would overwrite the fixtures."""
import numpy as np

from cmlp import Network

rng = np.random.default_rng(0)
X = rng.standard_normal((200, 6))
y = rng.integers(0, 3, 200)
net = Network([6, 8, 3], activation="gelu", seed=7, dropout=0.2)
hist = net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", lr=0.01, verbose=0)
net.save("tests/data/legacy_model.npz", hist)
kw = dict(epochs=4, batch_size=16, optimizer="adam", lr=0.01, schedule="cosine",
          weight_decay=1e-3, validation_split=0.2, early_stopping=True, patience=3, verbose=0)


class Crash(Exception):
    pass


def crash(h):
    if len(h) == 2:
        raise Crash


ck = Network([6, 8, 3], activation="gelu", seed=7, dropout=0.2)
try:
    ck.fit(X, y, checkpoint="tests/data/legacy_checkpoint.npz", on_epoch_end=crash, **kw)
except Crash:
    pass
net4, rkw = Network.load_checkpoint("tests/data/legacy_checkpoint.npz")
rkw["checkpoint"] = "/tmp/ignored.npz"
h4 = net4.fit(X, y, verbose=0, **rkw)
whole = Network([6, 8, 3], activation="gelu", seed=7, dropout=0.2)
hw = whole.fit(X, y, **kw)
print(np.array_equal(net4.parameters, whole.parameters), h4.loss == hw.loss)
np.save("tests/data/legacy_checkpoint_resumed.npy", whole.parameters)
np.save("tests/data/legacy_model_proba.npy", net.predict_proba(X[:20]))
