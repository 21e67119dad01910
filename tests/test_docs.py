"""The code in the README and the documentation runs: every ```python block of
each page, in order, in one fresh interpreter per page (so a page may build on
its earlier blocks), from a scratch directory. The gallery scripts run when the
site is built (.ci/run builds it with warnings as errors). Needs the source
checkout (the pages are not installed)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from helpers import ENV

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Outside a checkout (CI's installed-wheel stage deselects source_tree) none exist.
PAGES = sorted(page for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                                 *(ROOT / "docs").glob("guide/*.md")] if page.exists())
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.source_tree


def python_blocks(page):
    return BLOCK.findall(page.read_text())


def test_the_pages_have_code_to_run():
    assert ROOT.joinpath("docs", "conf.py").exists()
    with_code = [page.name for page in PAGES if python_blocks(page)]
    assert len(with_code) >= 6, with_code


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page, tmp_path, mnist_path):
    script = "\n\n".join(python_blocks(page))
    env = {**ENV, "CMLP_DATA": mnist_path, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
    # Blocks that print a check print True (and nothing that says False).
    assert "False" not in result.stdout.split(), result.stdout[-2000:]


def test_readme_points_into_pages_that_exist():
    links = re.findall(r"\]\(((?:docs|CONTRIBUTING|CHANGELOG|LICENSE)[^)#]*)", (ROOT / "README.md").read_text())
    assert len(links) >= 10
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160


BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def page_commands():
    """The `cmlp ...` lines of the pages' bash blocks (installs, mpiexec across
    named hosts and the README's first-screen commands are CI's own steps)."""
    lines = []
    for page in PAGES:
        if page.name == "README.md":
            continue
        for block in BASH.findall(page.read_text()):
            lines += [(page.name, line.split("  #")[0].strip()) for line in block.splitlines()
                      if line.startswith("cmlp ")]
    return lines


def test_page_commands_run(tmp_path, mnist_path):
    commands = page_commands()
    assert len(commands) >= 4, commands
    env = {**ENV, "CMLP_DATA": mnist_path, "MPLBACKEND": "Agg"}
    cli = [sys.executable, "-m", "cmlp"]
    # `cmlp export model.npz` needs a model: the training guide's `--save`.
    subprocess.run([*cli, "train", "--epochs", "1", "--save", "model.npz"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=600)
    for page, line in commands:
        words = line.replace("../shared/data/mnist", mnist_path).split()[1:]
        if words[0] == "train" and "--help" not in words:
            words += ["--epochs", "1"]              # one epoch: the options are what is tested
        result = subprocess.run([*cli, *words], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{page}: {line}\n{result.stderr[-2000:]}"


def test_distributed_page_runs_under_mpiexec(tmp_path, mnist_path):
    pytest.importorskip("mpi4py")

    page = ROOT / "docs" / "guide" / "distributed.md"
    assert "mpiexec -n 2 python train.py" in page.read_text()
    (tmp_path / "train.py").write_text("\n\n".join(python_blocks(page)).replace(
        "batch_size=512)", "batch_size=512, epochs=2, verbose=0)"))
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, "train.py"], cwd=tmp_path,
                            env={**ENV, "CMLP_DATA": mnist_path}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
