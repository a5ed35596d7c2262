"""One-shot pruning: keep masks from per-weight scores, attached with ``torch.nn.utils.prune``."""
from .apply import apply_masks, pruned_copy, remove_masks
from .masks import keep_count, keep_masks, magnitude_scores
from .report import count_zeros, sparsity_table

__all__ = ["apply_masks", "count_zeros", "keep_count", "keep_masks", "magnitude_scores",
           "pruned_copy", "remove_masks", "sparsity_table"]
