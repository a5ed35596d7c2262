"""Fake CIFAR-10/100 folders in torchvision's exact on-disk format (the python pickles), for tests."""
import pickle

import numpy as np

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def dump(path, content):
    """Pickle with protocol 2 and bytes keys: how the official files look when read with encoding='bytes'."""
    with open(path, "wb") as stream:
        pickle.dump(content, stream, protocol=2)


def write_cifar10(root, per_batch=60, n_test=50, seed=0):
    """Five training batches, a test batch and batches.meta; returns the raw arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_data, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        dump(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
                                           b"data": data, b"filenames": [b"x.png"] * per_batch})
        train_data.append(data)
        train_labels += labels
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = rng.integers(0, 10, n_test).tolist()
    dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels,
                                  b"data": test_data, b"filenames": [b"x.png"] * n_test})
    dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": CIFAR10_NAMES,
                                    b"num_vis": 3072})
    return np.concatenate(train_data), np.array(train_labels), test_data, np.array(test_labels)


def write_cifar100(root, n_train=200, n_test=40, seed=1, label_high=100):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, label_high, n).tolist()
        dump(folder / split, {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine,
                               b"coarse_labels": [f // 5 for f in fine], b"data": data})
        arrays[split] = (data, np.array(fine))
    fine_names = [f"class{i:02d}".encode() for i in range(100)]
    dump(folder / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20})
    return arrays, [n.decode() for n in fine_names]
