"""The package imports on a CPU torch whose only torchvision wheel is a CUDA build."""
import os
import subprocess
import sys


def test_import_bayes_halo_and_torchvision_in_a_fresh_interpreter():
    code = ("import bayes_halo; from bayes_halo.data.torchvision_compat import import_torchvision; "
            "tv = import_torchvision(); from torchvision.datasets import MNIST; "
            "print(bayes_halo.__version__, MNIST.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("MNIST")


def test_import_sets_no_openmp_wait_policy():
    """Imported as a library, the package leaves the process-wide threading policy to the user (only the
    command-line entry points choose one: docs/guide/speed.md)."""
    code = ("import os, bayes_halo; "
            "print(os.environ.get('OMP_WAIT_POLICY', 'unset'), os.environ.get('GOMP_SPINCOUNT', 'unset'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["unset", "unset"]
