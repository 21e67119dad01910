"""The bench scripts still run (on tiny synthetic data). No timing is judged here."""
import json
import os
import statistics
import subprocess
import sys

import pytest

from helpers import ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The train, predict and scikit-learn benches compile their GEMM floor (bench/_floor.py).
COMPILES = pytest.mark.needs_compiler


@pytest.mark.parametrize("script,kind,table", [
    pytest.param("bench_train.py", "train", "| cmlp float32 |", marks=COMPILES),
    pytest.param("bench_predict.py", "predict", "| cmlp float32 |", marks=COMPILES),
    ("bench_hook.py", "hook", "| batch 32 (16 batches) |"),
    pytest.param("bench_sklearn.py", "sklearn", "| digits (120x64, 2-fold) |", marks=COMPILES),
    ("bench_distributed.py", "distributed", "| 784-512-256-10 | 512 |"),
])
def test_bench_script_runs(tmp_path, script, kind, table):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), "--smoke",
         "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert table in result.stdout
    files = list(tmp_path.glob(f"{kind}-*.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text())
    assert payload["bench"] == kind
    assert payload["machine"]["cpus"] >= 1 and "numpy" in payload["versions"]
    if kind == "train":
        for name in ("cmlp float32", "cmlp float32, 1 thread", "cmlp float64", "NumPy reference",
                     "GEMM floor", "GEMM floor, 1 thread"):
            assert set(payload["results"][name]) == {"1", "32", "128", "512"}
            assert all(cell["median_s"] > 0 for cell in payload["results"][name].values())
        assert set(payload["threads"]) == {"32", "128", "512"}
        for cell in payload["threads"].values():
            # Timing is judged in bench/, never here: the smoke epochs are
            # milliseconds on a shared machine. The ceiling is the median of
            # its rounds' 2 x alone / together.
            rounds = cell["two_core_rounds"]
            assert len(rounds) == payload["settings"]["repeats"]
            assert all(alone > 0 and together > 0 for alone, together in rounds)
            assert cell["two_core_ceiling"] == pytest.approx(
                statistics.median(2 * alone / together for alone, together in rounds))
    elif kind == "sklearn":
        sets = {"digits", "breast cancer", "wine", "diabetes"}
        assert set(payload["results"]) == (sets | {f"{s}, lbfgs" for s in sets}
                                           | {"MNIST", "sparse"})
        sparse = payload["results"]["sparse"]
        assert sparse["shape"] == [300, 50000] and 0.001 < sparse["density"] < 0.01
        assert all(sparse[system]["fit_s"] > 0 for system in payload["summed_fit_s"])
        for totals in (payload["summed_fit_s"], payload["summed_fit_s_lbfgs"]):
            assert len(totals) == 3 and all(value > 0 for value in totals.values())
    elif kind == "distributed":
        assert len(payload["results"]) == 6           # 2 nets x 3 global batches
        for cell in payload["results"].values():
            for config in ("1 process x 1 thread", "1 process x 2 threads",
                           "2 ranks x 1 thread"):
                assert cell[config]["samples_per_s"] > 0
            assert cell["hook_s_per_step"] > 0 and cell["allreduce_s"] > 0
    elif kind == "hook":
        assert set(payload["results"]) == {"1", "32", "128"}
        assert all(cell["no-op hook"]["epoch_s"] > 0 for cell in payload["results"].values())
    else:
        assert set(payload["latency"]) == {"1", "2"}               # BLAS threads
        for tables in payload["latency"].values():
            cells = tables["Dense rows"]
            assert set(cells) == {"1", "8", "32"}
            for cell in cells.values():
                # ONNX Runtime is in the test extra: CI measures against it too.
                assert {"cmlp float32", "ONNX Runtime", "NumPy reference",
                        "GEMM floor (3 sgemm)"} <= set(cell)
                assert all(c["median_s"] > 0 and c["cmlp_over_system"] > 0 for c in cell.values())
        assert payload["sgd_step_dense"]["cmlp float32"]["median_s"] > 0
