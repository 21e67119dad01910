"""scikit-learn's own MLP tests, run against cmlp.sklearn.

The test file comes from the installed scikit-learn (never from this
repository): it is copied to a temporary directory with its one import of
the estimators rewritten to cmlp's, and run by pytest in a subprocess with
scikit-learn's conftest loaded for its fixtures.
"""
import os
import re
import subprocess
import sys

import pytest
import sklearn

from helpers import ENV

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
# Tests expected to fail, each with the reason. Those touching only
# scikit-learn's private internals stay here; the others are work still open.
EXPECTED_FAILURES = {
    "test_gradient": "calls the private MLPClassifier._loss_grad_lbfgs (cmlp's gradient is "
                     "checked against finite differences in tests/test_kernels.py)",
}


def test_sklearn_own_mlp_tests_pass(tmp_path):
    source = os.path.join(os.path.dirname(sklearn.__file__), "neural_network", "tests",
                          "test_mlp.py")
    with open(source) as f:
        text = f.read()
    assert text.count(IMPORT) == 1, "scikit-learn's test file no longer imports as expected"
    (tmp_path / "test_mlp.py").write_text(
        text.replace(IMPORT, "from cmlp.sklearn import MLPClassifier, MLPRegressor"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "sklearn.conftest",
         "-rA", "-q", "test_mlp.py"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1200)
    outcomes = {}
    for status, test in re.findall(r"^(PASSED|FAILED|ERROR) test_mlp\.py::(\S+)",
                                   result.stdout, re.M):
        outcomes[test] = status
    assert len(outcomes) >= 50, result.stdout[-3000:] + result.stderr[-3000:]
    failed = sorted(t for t, s in outcomes.items() if s != "PASSED")
    expected = sorted(t for t in outcomes if t.split("[")[0] in EXPECTED_FAILURES)
    passed = len(outcomes) - len(failed)
    print(f"scikit-learn {sklearn.__version__} test_mlp.py against cmlp: {passed} passed, "
          f"{len(failed)} failed of {len(outcomes)}")
    unexpected = [t for t in failed if t not in expected]
    assert not unexpected, f"failed: {unexpected}\n" + result.stdout[-6000:]
    now_passing = [t for t in expected if outcomes[t] == "PASSED"]
    if now_passing:
        pytest.fail(f"these pass now: take them off EXPECTED_FAILURES: {now_passing}")
