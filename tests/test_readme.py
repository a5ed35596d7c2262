"""The README's quick starts run as written, in order, in a fresh folder: the command lines on the 8x8
digits with a few epochs (seconds, not the MNIST minutes), the Python blocks as they stand."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import bayes_halo

README = Path(__file__).parents[1] / "README.md"
#: appended to every fit/path command: the digits and a few epochs (later flags win in argparse)
TINY = {"fit": ["--dataset", "digits", "--val-size", "200", "--epochs", "2", "--svi-epochs", "1", "--no-progress"],
        "path": ["--dataset", "digits", "--val-size", "200", "--epochs", "1", "--points", "2", "--refit-epochs", "1",
                 "--no-progress"]}
#: keep fractions for the digits network (50,200 weights after 2 epochs): 1 % would empty a layer
KEEP = {"0.01": "0.1"}


def section(title: str) -> str:
    """The README text under the ``## title`` heading."""
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(text: str) -> list[list[str]]:
    """The ``python -m bayes_halo.*`` commands of the bash blocks, comments dropped, on tiny settings."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] != ["python", "-m"] or "--help" in words:
                continue
            tool = words[2].rsplit(".", 1)[1]
            words = [KEEP.get(w, w) for w in words[3:]] + TINY.get(tool, [])
            out.append([sys.executable, "-m", f"bayes_halo.{tool}", *words])
    return out


def run(argv: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{shlex.join(argv[1:])}:\n{done.stderr[-2000:]}"


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_setup_commands_are_the_documented_ones():
    setup = blocks(section("Set-up: two commands"), "bash")[0]
    assert "bash scripts/install.sh && python -m bayes_halo.fit --prior halo" in setup
    assert "bash scripts/install.sh test && python3 -m pytest" in setup


def test_quick_starts_1_and_3_run_in_order(tmp_path):
    """The command line, then export of what it wrote, then the export's Python block."""
    cli, export = commands(section("Quick start 1: the command line")), commands(section("Quick start 3: export"))
    assert [c[2] for c in cli] == ["bayes_halo.fit", "bayes_halo.path"] and len(export) == 2
    for argv in cli + export:
        run(argv, tmp_path)
    for name in ("small.pt2", "small-refit.pt2"):
        assert (tmp_path / name).stat().st_size > 0
    python = blocks(section("Quick start 3: export"), "python")[0]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(python, namespace)
    finally:
        os.chdir(cwd)
    assert sum(p.numel() for p in namespace["net"].parameters()) > 0


@pytest.mark.skipif(not hasattr(bayes_halo, "attach"),
                    reason="needs the own-loop API (bayes_halo.attach) of the branch that adds it")
def test_quick_start_2_own_loop_runs_and_prunes_to_the_keep_fraction():
    """After the block at most 5 % of the prunable weights (round(0.05 N), the exact kept count) are non-zero;
    fewer where the prior's proximal step had already zeroed some of the kept ones."""
    namespace: dict = {}
    exec(blocks(section("Quick start 2: your own training loop"), "python")[0], namespace)
    weights = [m.weight for m in namespace["net"].modules() if hasattr(m, "weight")]
    total = sum(w.numel() for w in weights)
    assert 0 < sum(int((w != 0).sum()) for w in weights) <= round(0.05 * total)
