"""scikit-learn's real 8x8 handwritten digits (1797 images): a small stand-in for MNIST in tests."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .arrays import TensorSplit


def load_digits_tensors(test_fraction: float = 0.2, seed: int = 0) -> TensorSplit:
    """Digits as ``x [n, 1, 8, 8]`` = pixels / 16 (pixels are 0..16) and int64 labels 0..9.

    The test set is a stratified ``test_fraction`` of the images, drawn with ``seed``.
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction} must be strictly between 0 and 1")
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels.numpy())
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return TensorSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                       "scikit-learn load_digits")
