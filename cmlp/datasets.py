"""MNIST, read from the four standard IDX files (gzipped or not).

Where the files come from, in order:
  1. `path`, if given;
  2. the directory named by the environment variable CMLP_DATA;
  3. a cache directory ($CMLP_CACHE, else $XDG_CACHE_HOME/cmlp/mnist, else
     ~/.cache/cmlp/mnist), downloading any missing file there from the
     public mirrors (written atomically: a temporary file, then a rename).

Every file is checked against the SHA-256 of the standard MNIST IDX bytes
(after decompression). A download that does not match is rejected. Files in
a directory you name (1 or 2) that do not match are read anyway, if their IDX
headers are sound, with a DatasetNotice warning that this is not MNIST: any
dataset in the MNIST IDX format (Fashion-MNIST, say) loads the same way.
"""
import gzip
import hashlib
import os
import tempfile
import urllib.request
import warnings

import numpy as np

FILES = {
    "train_images": ("train-images-idx3-ubyte",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX magic numbers: two zero bytes, 0x08 (unsigned byte data), the rank.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


class DatasetNotice(UserWarning):
    """The files read are in MNIST's IDX format but are not MNIST itself."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected SHA-256."""


def default_cache_dir():
    if os.environ.get("CMLP_CACHE"):
        return os.environ["CMLP_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cmlp", "mnist")


def load_mnist(path=None, *, mirrors=MIRRORS, timeout=60.0):
    """Return (X_train, y_train, X_test, y_test).

    X are float32 arrays of shape (n, rows * cols) scaled to [0, 1]; y are
    int64 label arrays. See the module docstring for where files are looked
    for. Raises FileNotFoundError if a named directory lacks a file,
    ValueError for a malformed file (naming it), DownloadError if a download
    fails or does not verify.
    """
    if path is not None or os.environ.get("CMLP_DATA"):
        directory = os.fspath(path) if path is not None else os.environ["CMLP_DATA"]
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"MNIST directory {directory!r} does not exist")
        raws, foreign = {}, []
        for key, (name, sha) in FILES.items():
            filename = _find(directory, name)
            if filename is None:
                raise FileNotFoundError(
                    f"{directory!r} has neither {name} nor {name}.gz (MNIST needs "
                    + ", ".join(n for n, _ in FILES.values()) + ")")
            raws[key] = (_read_bytes(filename), filename)
            if hashlib.sha256(raws[key][0]).hexdigest() != sha:
                foreign.append(os.path.basename(filename))
        if foreign:
            warnings.warn(f"{directory!r}: {', '.join(foreign)} differ from the standard MNIST "
                          "files (SHA-256); reading them as an MNIST-format dataset",
                          DatasetNotice, stacklevel=2)
    else:
        directory = default_cache_dir()
        raws = {key: _cached(directory, name, sha, mirrors, timeout)
                for key, (name, sha) in FILES.items()}
    return _assemble(raws)


def _find(directory, name):
    for candidate in (name, name + ".gz"):
        filename = os.path.join(directory, candidate)
        if os.path.isfile(filename):
            return filename
    return None


def _read_bytes(filename):
    """The IDX bytes of a file, decompressed if it is gzipped."""
    with open(filename, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{filename}: corrupt gzip data ({exc})") from None
    return data


def _cached(directory, name, sha, mirrors, timeout):
    """(bytes, filename) of a verified file in the cache, downloading if needed."""
    filename = _find(directory, name)
    if filename is not None:
        try:
            data = _read_bytes(filename)
        except ValueError:
            data = None
        if data is not None and hashlib.sha256(data).hexdigest() == sha:
            return data, filename
        os.unlink(filename)     # stale or damaged cache entry: fetch it again
    os.makedirs(directory, exist_ok=True)
    return download(name, sha, directory, mirrors, timeout)


def download(name, sha, directory, mirrors=MIRRORS, timeout=60.0):
    """Fetch `name`.gz from the first mirror that serves bytes hashing to `sha`.

    Writes `directory`/`name`.gz atomically; returns (idx bytes, filename).
    """
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
            data = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
        except (OSError, EOFError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            failures.append(f"{url}: SHA-256 {digest[:12]}... does not match {sha[:12]}...")
            continue
        target = os.path.join(directory, name + ".gz")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload if payload[:2] == b"\x1f\x8b" else gzip.compress(payload))
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return data, target
    raise DownloadError(f"could not download {name}: " + "; ".join(failures or ["no mirrors"]))


def parse_idx(data, filename, magic):
    """The uint8 array in IDX bytes, after checking magic number and length."""
    if len(data) < 4:
        raise ValueError(f"{filename}: truncated IDX file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{filename}: wrong magic number 0x{found:08x}, expected 0x{magic:08x} "
                         f"({'images' if magic == IMAGES_MAGIC else 'labels'} file)")
    rank = magic & 0xFF
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"{filename}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise ValueError(f"{filename}: truncated: {len(data)} bytes, dimensions {dims} "
                         f"need {expected}")
    if len(data) > expected:
        raise ValueError(f"{filename}: {len(data) - expected} bytes beyond dimensions {dims}")
    if 0 in dims:
        raise ValueError(f"{filename}: empty IDX array, dimensions {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _assemble(raws):
    arrays = {}
    for key, (data, filename) in raws.items():
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        arrays[key] = (parse_idx(data, filename, magic), filename)
    for split in ("train", "test"):
        (images, image_file), (labels, label_file) = arrays[split + "_images"], arrays[split + "_labels"]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{image_file} has {images.shape[0]} images but {label_file} "
                             f"has {labels.shape[0]} labels")
    train_shape = arrays["train_images"][0].shape[1:]
    test_shape = arrays["test_images"][0].shape[1:]
    if train_shape != test_shape:
        raise ValueError(f"train images are {train_shape} but test images are {test_shape}")

    def images(key):
        raw = arrays[key][0]
        return (raw.reshape(raw.shape[0], -1).astype(np.float32) / np.float32(255.0))

    def labels(key):
        return arrays[key][0].astype(np.int64)

    return (images("train_images"), labels("train_labels"),
            images("test_images"), labels("test_labels"))
