"""`import torchvision` works in the environment scripts/install.sh builds, also on a CPU torch with a CUDA torchvision."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_plain_import_torchvision_and_a_model_definition():
    """What a user's own code does (no bayes_halo import first): the .pth hook of install.sh, or a working extension."""
    done = run("import torchvision; from torchvision.models import resnet18; "
               "print(sum(p.numel() for p in resnet18(num_classes=10).parameters()))")
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split()[-1] == "11181642"  # ResNet-18 with a 10-class head: 11,176,512 + 5,130


def test_the_hook_leaves_torchvision_with_its_nms_schema():
    done = run("import torch, torchvision_cpu_compat as c; c.install(); import torchvision; "
               "print(hasattr(torch.ops.torchvision, 'nms'))")
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split()[-1] == "True"  # from the extension, or from the schema the hook defined
