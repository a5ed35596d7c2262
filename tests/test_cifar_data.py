"""CIFAR-10/100 from fake folders written here in torchvision's on-disk format (the python pickles)."""
import os
import pickle

import numpy as np
import pytest
import torch

from bayes_halo.data import ArrayData, BatchTransform, load_cifar_tensors, load_dataset
from bayes_halo.data import cifar as cifar_module
from bayes_halo.errors import ConfigError, DataUnavailableError
from bayes_halo.training.evaluate import accuracy
from fake_cifar import CIFAR10_NAMES, dump, write_cifar10, write_cifar100

def channel_major(data):
    """Image i, channel c, row r, column k is byte ``c * 1024 + r * 32 + k`` of row i (the CIFAR layout)."""
    n = len(data)
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for c in range(3):
        for r in range(32):
            out[:, c, r, :] = data[:, c * 1024 + r * 32: c * 1024 + r * 32 + 32]
    return out


def test_cifar10_folder_is_read_exactly(tmp_path):
    x_tr, y_tr, x_te, y_te = write_cifar10(tmp_path)
    split = load_cifar_tensors("cifar10", tmp_path, download=False)
    assert split.x_train.dtype == torch.uint8 and split.x_train.shape == (300, 3, 32, 32)
    assert split.x_test.shape == (50, 3, 32, 32) and split.y_train.dtype == torch.int64
    np.testing.assert_array_equal(split.x_train.numpy(), channel_major(x_tr))
    np.testing.assert_array_equal(split.x_test.numpy(), channel_major(x_te))
    np.testing.assert_array_equal(split.y_train.numpy(), y_tr)
    np.testing.assert_array_equal(split.y_test.numpy(), y_te)
    assert split.classes == tuple(n.decode() for n in CIFAR10_NAMES)


def test_cifar100_folder_uses_fine_labels(tmp_path):
    arrays, names = write_cifar100(tmp_path)
    split = load_cifar_tensors("cifar100", tmp_path, download=False)
    assert split.x_train.shape == (200, 3, 32, 32) and split.x_test.shape == (40, 3, 32, 32)
    np.testing.assert_array_equal(split.x_train.numpy(), channel_major(arrays["train"][0]))
    np.testing.assert_array_equal(split.y_train.numpy(), arrays["train"][1])
    np.testing.assert_array_equal(split.y_test.numpy(), arrays["test"][1])
    assert split.classes == tuple(names)


def test_load_dataset_carves_validation_and_normalises(tmp_path):
    x_tr, y_tr, _, _ = write_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path, val_size=70, seed=3, download=False)
    assert isinstance(data, ArrayData) and data.x_train.dtype == torch.uint8
    assert (data.n_train, len(data.y_val), data.n_classes, data.input_shape) == (230, 70, 10, (3, 32, 32))
    assert data.classes[0] == "airplane" and data.augments
    order = torch.randperm(300, generator=torch.Generator().manual_seed(3)).numpy()
    images = channel_major(x_tr)
    np.testing.assert_array_equal(data.x_val.numpy(), images[order[:70]])
    np.testing.assert_array_equal(data.x_train.numpy(), images[order[70:]])
    np.testing.assert_array_equal(data.y_val.numpy(), y_tr[order[:70]])
    # normalisation statistics: the training split's pixels (validation excluded), per channel
    unit = images[order[70:]].astype(np.float64) / 255
    mean, std = unit.mean(axis=(0, 2, 3)), unit.std(axis=(0, 2, 3))
    np.testing.assert_allclose(data.transform.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(data.transform.std, std, rtol=1e-9)
    expected = (images[order[:70]] / 255 - mean[None, :, None, None]) / std[None, :, None, None]
    got = data.prepare_batch(data.x_val)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_augmentation_can_be_turned_off(tmp_path):
    write_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path, val_size=10, download=False, augment=False)
    assert not data.augments
    xb = data.x_train[:8]
    assert data.augmentation_draws(8, torch.Generator().manual_seed(0)) is None
    on = load_dataset("cifar10", tmp_path, val_size=10, download=False)
    draws = on.augmentation_draws(8, torch.Generator().manual_seed(0))
    assert not torch.equal(on.prepare_batch(xb, draws), on.prepare_batch(xb))


def test_cifar100_dataset_counts_all_classes_even_if_unseen(tmp_path):
    write_cifar100(tmp_path, n_train=30, n_test=5, label_high=50)
    data = load_dataset("cifar100", tmp_path, val_size=5, download=False)
    assert int(torch.cat([data.y_train, data.y_val, data.y_test]).max()) < 50
    assert data.n_classes == 100 and len(data.classes) == 100


def test_missing_folder_says_where_to_put_which_files(tmp_path, monkeypatch):
    attempts = []
    monkeypatch.setattr(cifar_module, "_torchvision_download", lambda layout, root: attempts.append(root))
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", tmp_path / "data", download=True)
    message = str(err.value)
    assert attempts == [tmp_path / "data"]  # the download was tried first
    assert "\n" not in message and "cifar-10-batches-py/" in message and str(tmp_path / "data") in message
    assert all(name in message for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"))
    with pytest.raises(DataUnavailableError, match="cifar-100-python/ with train, test, meta"):
        load_cifar_tensors("cifar100", tmp_path, download=False)
    assert len(attempts) == 1  # download=False never tries
    with pytest.raises(DataUnavailableError, match="--data-dir"):
        load_cifar_tensors("cifar10", None)


def test_partial_folder_lists_the_missing_files(tmp_path):
    write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataUnavailableError, match=r"\(missing: data_batch_3\)"):
        load_cifar_tensors("cifar10", tmp_path, download=False)


def test_offline_download_fails_into_the_same_one_line_error(tmp_path):
    """The real torchvision download: no internet here, so it fails and the message says what to do."""
    with pytest.raises(DataUnavailableError, match="CIFAR-10 not found"):
        load_cifar_tensors("cifar10", tmp_path, download=True)


def test_corrupt_or_hostile_files_are_refused(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    dump(folder / "data_batch_2", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(DataUnavailableError, match="data_batch_2 is not a CIFAR-10 batch"):
        load_cifar_tensors("cifar10", tmp_path, download=False)
    dump(folder / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DataUnavailableError, match="labels in 0..9"):
        load_cifar_tensors("cifar10", tmp_path, download=False)
    (folder / "data_batch_2").write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a callable: never unpickled
    with pytest.raises(DataUnavailableError, match="unexpected object"):
        load_cifar_tensors("cifar10", tmp_path, download=False)


def test_uint8_images_need_a_transform_and_labels_must_fit_the_classes():
    x, y = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ConfigError, match="uint8 needs a transform"):
        ArrayData("fake", x, y, x, y, x, y)
    transform = BatchTransform((0.5,) * 3, (0.25,) * 3)
    data = ArrayData("fake", x, y, x, y, x, y, transform=transform)
    assert data.n_classes == 3
    with pytest.raises(ConfigError, match="labels outside 0..1"):
        ArrayData("fake", x, y, x, y, x, y, classes=("a", "b"), transform=transform)


def test_float_datasets_are_fed_unchanged():
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 0, 1, 1])
    data = ArrayData("fake", x, y, x, y, x, y)
    assert data.prepare_batch(x) is x and not data.augments


def test_accuracy_of_uint8_data_uses_the_normalised_images(tmp_path):
    write_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path, val_size=40, download=False)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    with pytest.raises(ConfigError, match="prepare=data.prepare_batch"):
        accuracy(net, data.x_val, data.y_val)
    mean = torch.tensor(data.transform.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.transform.std).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = (net((data.x_val.float() / 255 - mean) / std).argmax(-1) == data.y_val).double().mean()
    got = accuracy(net, data.x_val, data.y_val, batch_size=7, prepare=data.prepare_batch)
    assert got == pytest.approx(float(by_hand)) and 0 < got < 1
