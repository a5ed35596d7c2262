"""Export a pruned network as the physically smaller network it computes.

``export_run(run_dir, keep)`` prunes a finished run exactly as ``fit`` does, removes every dead
unit (folding constants into the next bias), stores each tensor dense or sparse (whichever is
smaller) and writes a file that :func:`load_export` turns back into a plain ``torch.nn.Sequential``
(:mod:`.loader` imports only torch).  ``export_network`` does the same for any pruned chain.
"""
from .loader import load_export
from .network import ExportedNetwork, export_network
from .run import export_run

__all__ = ["ExportedNetwork", "export_network", "export_run", "load_export"]
