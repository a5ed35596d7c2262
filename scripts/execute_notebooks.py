"""Execute notebooks top to bottom in a fresh kernel of this interpreter and save them with their outputs.

    python scripts/execute_notebooks.py                      # every notebook in notebooks/, in place
    python scripts/execute_notebooks.py notebooks/02_shrinkage.ipynb --out /tmp/executed

The kernel is the ``python3`` kernel of the interpreter running this script (in a virtual
environment, that environment's), with the repository root first on PYTHONPATH, as in
tests/test_notebooks.py.  Each notebook is written atomically, and only after it ran without error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def execute(path: Path, out: Path, timeout: int) -> float:
    """Run ``path`` and write it, outputs included, to ``out``; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, help="folder for the executed copies (default: in place)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb")):
        seconds = execute(path, (args.out / path.name) if args.out else path, args.timeout)
        print(f"{path.name}: {seconds:.0f} s ({sys.executable})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
