"""MNIST loading: the real files, malformed files, and the downloader against
a local HTTP server on 127.0.0.1."""
import contextlib
import gzip
import hashlib
import http.server
import os
import shutil
import threading

import numpy as np
import pytest

from cmlp import datasets
from cmlp.datasets import FILES, DatasetNotice, DownloadError, load_mnist


def test_real_mnist(mnist):
    X_train, y_train, X_test, y_test = mnist
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == np.float32 and 0 <= X_train.min() and X_train.max() == 1
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10))
    np.testing.assert_array_equal(y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(np.bincount(y_test),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_environment_variable_and_uncompressed_files(mnist_path, tmp_path, monkeypatch):
    for name, _ in FILES.values():
        with gzip.open(os.path.join(mnist_path, name + ".gz")) as src:
            (tmp_path / name).write_bytes(src.read())
    monkeypatch.setenv("CMLP_DATA", str(tmp_path))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the real files: no notice
        X_train, y_train, X_test, y_test = load_mnist()
    assert X_train.shape == (60000, 784) and y_test.shape == (10000,)


def idx(array, magic_rank):
    header = bytes([0, 0, 8, magic_rank]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake(directory, n_train=20, n_test=8, side=4, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    parts = {
        "train_images": idx(rng.integers(0, 256, (n_train, side, side)), 3),
        "train_labels": idx(rng.integers(0, 10, n_train), 1),
        "test_images": idx(rng.integers(0, 256, (n_test, side, side)), 3),
        "test_labels": idx(rng.integers(0, 10, n_test), 1),
    }
    for key, data in parts.items():
        name = FILES[key][0]
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return parts


def test_other_idx_dataset_loads_with_a_notice(tmp_path):
    parts = write_fake(tmp_path, side=5)
    with pytest.warns(DatasetNotice, match="differ from the standard MNIST"):
        X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (20, 25) and X_test.shape == (8, 25)
    expected = np.frombuffer(parts["train_images"][16:], dtype=np.uint8).reshape(20, 25) / 255
    np.testing.assert_allclose(X_train, expected, rtol=1e-6)


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b + b"xx", "beyond dimensions"),
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "wrong magic number"),
])
def test_malformed_image_file_is_named(tmp_path, damage, match):
    parts = write_fake(tmp_path, compress=False)
    name = FILES["train_images"][0]
    (tmp_path / name).write_bytes(damage(parts["train_images"]))
    with pytest.warns(DatasetNotice), pytest.raises(ValueError, match=f"{name}.*{match}"):
        load_mnist(tmp_path)


def test_count_mismatch_is_named(tmp_path):
    write_fake(tmp_path)
    rng = np.random.default_rng(1)
    name = FILES["test_labels"][0]
    (tmp_path / (name + ".gz")).write_bytes(gzip.compress(idx(rng.integers(0, 10, 7), 1)))
    with pytest.warns(DatasetNotice), pytest.raises(ValueError, match="8 images.*7 labels"):
        load_mnist(tmp_path)


def test_corrupt_gzip_and_missing_file(tmp_path):
    write_fake(tmp_path)
    name = FILES["train_labels"][0]
    (tmp_path / (name + ".gz")).write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ValueError, match=f"{name}.gz: corrupt gzip"):
        load_mnist(tmp_path)
    (tmp_path / (name + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


@contextlib.contextmanager
def serve(directory):
    """A quiet HTTP server for `directory` on 127.0.0.1, counting requests."""
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hits
    finally:
        server.shutdown()
        server.server_close()


def test_download_verifies_and_caches(mnist_path, tmp_path, monkeypatch):
    good = tmp_path / "good"
    shutil.copytree(mnist_path, good)
    bad = tmp_path / "bad"                 # a mirror serving corrupted files
    bad.mkdir()
    for name, _ in FILES.values():
        data = bytearray(gzip.decompress((good / (name + ".gz")).read_bytes()))
        data[-1] ^= 0xFF
        (bad / (name + ".gz")).write_bytes(gzip.compress(bytes(data), compresslevel=1))
    cache = tmp_path / "cache"
    monkeypatch.delenv("CMLP_DATA", raising=False)
    monkeypatch.setenv("CMLP_CACHE", str(cache))

    with serve(bad) as (bad_url, _):
        with pytest.raises(DownloadError, match="SHA-256"):
            load_mnist(mirrors=[bad_url])
        assert not any(p.name.endswith(".gz") for p in cache.iterdir())   # nothing kept
        assert not any(p.name.endswith(".part") for p in cache.iterdir())
        with serve(good) as (good_url, hits):
            X_train, y_train, X_test, y_test = load_mnist(mirrors=[bad_url, good_url])
            assert len(hits) == 4
    assert X_train.shape == (60000, 784)
    for name, sha in FILES.values():
        cached = cache / (name + ".gz")
        assert hashlib.sha256(gzip.decompress(cached.read_bytes())).hexdigest() == sha

    # Second call: served from the cache, no mirror needed.
    X_again = load_mnist(mirrors=[])[0]
    np.testing.assert_array_equal(X_again, X_train)

    # A damaged cache entry is fetched again.
    name = FILES["test_labels"][0]
    (cache / (name + ".gz")).write_bytes(b"broken")
    with serve(good) as (good_url, hits):
        load_mnist(mirrors=[good_url])
        assert hits == ["/" + name + ".gz"]


def test_unreachable_mirror_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("CMLP_DATA", raising=False)
    monkeypatch.setenv("CMLP_CACHE", str(tmp_path))
    with serve(tmp_path / "empty-dir-that-404s") as (url, _):
        with pytest.raises(DownloadError, match="404"):
            datasets.load_mnist(mirrors=[url], timeout=5)
