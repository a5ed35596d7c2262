"""``stdlib-text``: next-character data from ``pydoc_data.topics``, text that ships with every Python.

The documents are the help topics of ``pydoc_data.topics.topics`` (79 on Python 3.11.7, about
465,000 characters), sorted by name.  The split is by document and fixed: document ``i`` of that
order goes to the test split when ``i % 10 == 0``, to validation when ``i % 10 == 5``, else to
training.  Each split's documents, in order and each followed by ``"\\n"``, are one stream of
characters cut into non-overlapping windows of ``CONTEXT + 1``: ``x`` = the first ``CONTEXT``,
``y`` = the last ``CONTEXT`` (so each character after a window's first is predicted once).  The
vocabulary is every character of the topics, sorted by code point.  The text differs slightly
between Python versions: ``details`` records the Python version, the topics' SHA-256 (of their JSON
with sorted keys, UTF-8) and the documents of each split.
"""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch

from .arrays import TensorSplit

CONTEXT = 64
ORIGIN = "pydoc_data.topics"


def stdlib_topics() -> dict[str, str]:
    """The help topics shipped with this Python: name -> text."""
    from pydoc_data.topics import topics
    return dict(topics)


def split_documents(names: list[str]) -> dict[str, list[str]]:
    """The fixed split by document: ``{"train", "val", "test"}`` -> sorted names (see the module docstring)."""
    ordered = sorted(names)
    return {"train": [n for i, n in enumerate(ordered) if i % 10 not in (0, 5)],
            "val": [n for i, n in enumerate(ordered) if i % 10 == 5],
            "test": [n for i, n in enumerate(ordered) if i % 10 == 0]}


def windows(text: str, vocabulary: str, context: int = CONTEXT) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` int64 ``[n, context]``: non-overlapping windows of ``context + 1`` characters of ``text``."""
    index = {c: i for i, c in enumerate(vocabulary)}
    codes = torch.tensor([index[c] for c in text], dtype=torch.int64)
    n = (len(codes) - 1) // context
    chunks = codes[:n * context + 1]
    return chunks[:-1].reshape(n, context), chunks[1:].reshape(n, context)


def load_stdlib_text(data_dir: Path | None = None, download: bool = False) -> TensorSplit:
    """The ``stdlib-text`` split (``data_dir`` and ``download`` are unused: the text ships with Python)."""
    topics = stdlib_topics()
    vocabulary = "".join(sorted(set("".join(topics.values())) | {"\n"}))
    documents = split_documents(list(topics))
    streams = {split: "".join(topics[name] + "\n" for name in names) for split, names in documents.items()}
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (windows(streams[s], vocabulary) for s in ("train", "val", "test"))
    digest = hashlib.sha256(json.dumps(topics, sort_keys=True).encode("utf-8")).hexdigest()
    details = {"origin": ORIGIN, "python": platform.python_version(), "sha256": digest,
               "characters": {split: len(text) for split, text in streams.items()}, "context": CONTEXT,
               "vocabulary_size": len(vocabulary), "documents": documents}
    return TensorSplit(x_tr, y_tr, x_te, y_te, f"{ORIGIN} of Python {platform.python_version()}",
                       classes=tuple(vocabulary), x_val=x_va, y_val=y_va, task="next-character", details=details)
