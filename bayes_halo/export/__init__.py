"""Export a pruned network as the physically smaller network it computes, for any architecture.

``export_network(net, input_shape)`` removes every dead channel/unit of ``net`` with Torch-Pruning's
dependency graph (:mod:`.removal`), residual networks included, and checks the outputs;
``export_run(run_dir, keep)`` prunes a finished run exactly as ``fit`` does, exports it as a
``torch.export`` program (``.pt2``), and reports parameters and multiply-adds before and after.
:func:`load_export` (:mod:`.loader`, imports only torch) runs the file.
"""
from .loader import load_export
from .network import ExportedNetwork, export_network
from .run import export_run

__all__ = ["ExportedNetwork", "export_network", "export_run", "load_export"]
