"""Hostile model files (issue 10, items 3, 4 and 8): crafted, tampered and
fuzzed .npz files are refused with ValueError, in bounded time and memory,
before anything they declare is allocated."""
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from cmlp import Network

from helpers import ENV, TESTS_DIR, blobs


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    """A checkpoint of a small Adam run: every member the format has."""
    path = tmp_path_factory.mktemp("files") / "run.npz"
    X, y = blobs(n=60)
    net = Network([10, 8, 3], seed=0)
    net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", validation_split=0.2,
            early_stopping=True, checkpoint=path)
    return path


def fields_of(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def write_fields(path, fields):
    np.savez(path, **fields)
    return path


def add_members(archive, fields, replaced=None):
    """Write fields into an open ZipFile as np.savez does; `replaced` maps a
    key to the raw bytes to store instead."""
    for key, value in fields.items():
        member = io.BytesIO()
        np.save(member, value)
        archive.writestr(key + ".npy", (replaced or {}).get(key, member.getvalue()))


def load_in_child(path, what):
    """Load `path` in a fresh process; print and return (outcome, peak RSS
    growth over importing cmlp in MB)."""
    outcome, growth, peak = peak_rss_mb_of_load(path)
    print(f"{what} ({path.stat().st_size} B): {outcome}, peak RSS {peak:.1f} MB "
          f"(+{growth:.1f} MB over importing cmlp)")
    return outcome, growth


def peak_rss_mb_of_load(path):
    """Load `path` in a fresh process: (outcome, peak RSS growth over the
    import in MB, peak RSS of the process in MB)."""
    code = (
        "import resource, sys\n"
        "from cmlp import Network\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    Network.load(sys.argv[1])\n"
        "    print('accepted', end=' ')\n"
        "except ValueError as exc:\n"
        "    print('ValueError', end=' ')\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) / 1024, after / 1024)\n")
    # cwd: the tests' folder, so the source tree does not shadow the install.
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=ENV, cwd=TESTS_DIR,
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    return out[0], float(out[1]), float(out[2])


def test_declared_sizes_are_checked_before_the_network_is_built(tmp_path, trained_file):
    # Used to allocate 6.2 GB and take 16 s: the sizes of a 10 KB file were
    # believed before its parameters were looked at.
    fields = fields_of(trained_file)
    for sizes in ([20000, 20000, 10], [50000, 50000, 10]):
        fields["sizes"] = np.array(sizes)
        path = write_fields(tmp_path / "huge.npz", fields)
        assert path.stat().st_size < 20_000
        start = time.perf_counter()
        with pytest.raises(ValueError, match=rf"parameters are float32 \(115,\), the "
                                             rf"network \[{sizes[0]}"):
            Network.load(path)
        assert time.perf_counter() - start < 1.0
    outcome, growth = load_in_child(path, f"crafted file declaring {sizes}")
    assert outcome == "ValueError" and growth < 20


def test_a_header_cannot_declare_more_than_the_member_stores(tmp_path, trained_file):
    fields = fields_of(trained_file)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        add_members(archive, fields, {"parameters": buffer.getvalue() + b"\0" * 64})
    with pytest.raises(ValueError, match=r"declares \(1000000000,\) float32 .* but 64 bytes"):
        Network.load(path)


def test_unknown_members_are_never_read(tmp_path, trained_file):
    # A 1 MB file with a 1 GiB member used to load at 1.08 GB RSS.
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        add_members(archive, fields_of(trained_file))
        with archive.open("junk.npy", "w", force_zip64=True) as junk:
            np.lib.format.write_array_header_1_0(
                junk, {"descr": "<f4", "fortran_order": False, "shape": (2**28,)})
            zeros = bytes(1 << 22)
            for _ in range(2**30 // len(zeros)):
                junk.write(zeros)
    outcome, growth = load_in_child(path, "file with a 1 GiB unknown member")
    assert outcome == "accepted" and growth < 50


def test_member_count_and_data_size_are_capped(tmp_path, trained_file):
    fields = fields_of(trained_file)
    many = tmp_path / "many.npz"
    with zipfile.ZipFile(many, "w") as archive:
        add_members(archive, fields)
        for i in range(100_000):
            archive.writestr(f"x{i}", b"")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="the archive has 65535 members .* at most 64"):
        Network.load(many)
    seconds = time.perf_counter() - start
    print(f"100,000 members refused in {seconds * 1e3:.1f} ms")
    assert seconds < 0.5                   # was 10.7 s

    size = os.path.getsize(trained_file)
    with pytest.raises(ValueError, match="more than the limit of 1000 bytes; if you trust the "
                                         "file, raise the limit with max_bytes= or the "
                                         "environment variable CMLP_MAX_MODEL_BYTES"):
        Network.load(trained_file, max_bytes=1000)
    assert Network.load(trained_file, max_bytes=size).sizes == (10, 8, 3)
    os.environ["CMLP_MAX_MODEL_BYTES"] = "1000"
    try:
        with pytest.raises(ValueError, match="limit of 1000 bytes"):
            Network.load_checkpoint(trained_file)
    finally:
        del os.environ["CMLP_MAX_MODEL_BYTES"]


def test_object_arrays_and_pickles_are_refused(tmp_path, trained_file):
    fields = fields_of(trained_file)
    fields["history"] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, **fields)                     # allow_pickle on write
    with pytest.raises(ValueError, match="member 'history.npy': dtype object"):
        Network.load(path)


@pytest.mark.parametrize("key, value, match", [
    ("optimizer_state1", lambda v: -np.abs(v) - 1, "second moment holds negative"),
    ("optimizer_state0", lambda v: np.full_like(v, np.nan), "NaN or infinite"),
    ("optimizer_step", lambda v: np.array(-1), "step must be an integer >= 0"),
    ("optimizer_step", lambda v: np.array(1.5), "step must be an integer >= 0"),
    ("optimizer_config", lambda v: np.array(json.dumps({"name": "adam", "lr": float("nan")})),
     "lr must be"),
    ("optimizer_config", lambda v: np.array('{"name": "rmsprop"}'), "no known optimizer"),
    ("optimizer_config", lambda v: np.array("[" * 100_000 + "]" * 100_000), "not a valid"),
    ("optimizer_state1", lambda v: v[:5], r"optimizer state is float32 \(5,\)"),
    ("sizes", lambda v: np.array([10.5, 3.0]), "sizes must be a list of integers"),
    ("sizes", lambda v: np.array([10, 2**40, 3]), "sizes must be < 2"),
    ("output", lambda v: np.array(["softmax", "identity"]), "output must be a scalar"),
    ("seed_entropy", lambda v: np.array("-5"), "not a valid"),
    ("batches_done", lambda v: np.array(-3), "batches_done must be an integer >= 0"),
    ("shuffle_rng", lambda v: np.array('{"bit_generator": "MT19937"}'), "not a valid"),
    ("dropout", lambda v: np.array([2.0, 0.0]), "not a valid"),
    ("target_ndim", lambda v: np.array(7), "target_ndim must be 1 or 2"),
    ("parameters", lambda v: v.astype(np.float64), r"parameters are float64"),
])
def test_tampered_fields_are_refused_with_value_error(tmp_path, trained_file, key, value, match):
    fields = fields_of(trained_file)
    fields[key] = value(fields[key])
    path = write_fields(tmp_path / "tampered.npz", fields)
    with pytest.raises(ValueError, match=match):
        Network.load(path)


@pytest.mark.parametrize("key, value, match", [
    ("checkpoint_run", "{", "damaged checkpoint state"),
    ("checkpoint_position", json.dumps({"rows_done": -1, "loss_sum": 0.0, "n_correct": 0}),
     "row counts must be integers >= 0"),
    ("checkpoint_position", json.dumps({"rows_done": 8, "loss_sum": float("nan"),
                                        "n_correct": 0}), "loss sum"),
    ("checkpoint_epoch", -2, "checkpoint_epoch must be an integer >= 0"),
    ("checkpoint_best", None, "best parameters do not match"),
])
def test_tampered_checkpoints_are_refused_with_value_error(tmp_path, trained_file, key, value,
                                                           match):
    fields = fields_of(trained_file)
    fields[key] = fields["parameters"][:3] if value is None else np.array(value)
    path = write_fields(tmp_path / "tampered.npz", fields)
    with pytest.raises(ValueError, match=match):
        Network.load_checkpoint(path)


def flipped(data, rng):
    data = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        data[rng.integers(len(data))] ^= 1 << rng.integers(8)
    return bytes(data)


def test_fuzzed_model_files_are_loaded_or_refused_never_anything_else(tmp_path, trained_file):
    """Bit flips and truncations of a real checkpoint, in a child process
    (a crash there fails this test instead of killing pytest): every file
    loads, or is refused with ValueError, in bounded time."""
    original = trained_file.read_bytes()
    rng = np.random.default_rng(0)
    cases = [flipped(original, rng) for _ in range(1500)]
    cases += [original[:int(n)] for n in rng.integers(0, len(original), 300)]
    for i, data in enumerate(cases):
        (tmp_path / f"{i}.npz").write_bytes(data)
    code = (
        "import sys, time, json\n"
        "import numpy as np\n"
        "from cmlp import Network\n"
        "counts = {'accepted': 0, 'rejected': 0, 'other': []}\n"
        "slowest = 0.0\n"
        "for i in range(int(sys.argv[2])):\n"
        "    start = time.perf_counter()\n"
        "    try:\n"
        "        net = Network.load(f'{sys.argv[1]}/{i}.npz')\n"
        "        net.predict(np.zeros((1, net.sizes[0]), net.dtype))\n"
        "        counts['accepted'] += 1\n"
        "    except ValueError:\n"
        "        counts['rejected'] += 1\n"
        "    except BaseException as exc:\n"
        "        counts['other'].append(f'{i}: {type(exc).__name__}: {exc}')\n"
        "    slowest = max(slowest, time.perf_counter() - start)\n"
        "counts['slowest_ms'] = slowest * 1e3\n"
        "print(json.dumps(counts))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(len(cases))],
                            env=ENV, cwd=TESTS_DIR, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]          # no crash
    counts = json.loads(result.stdout)
    print(f"model-file fuzz: {len(cases)} files, {counts['rejected']} rejected, "
          f"{counts['accepted']} accepted, {len(counts['other'])} other outcomes, "
          f"0 crashed, slowest {counts['slowest_ms']:.1f} ms")
    assert counts["other"] == []
    assert counts["rejected"] > len(cases) // 2 and counts["slowest_ms"] < 2000
