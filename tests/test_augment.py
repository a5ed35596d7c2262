"""Batched random crop + flip and per-channel normalisation, checked against numpy by brute force."""
import numpy as np
import pytest
import torch

from bayes_halo.data import ArrayData, BatchTransform, iterate_minibatches
from bayes_halo.data.augment import channel_moments, crop_draws, normalize, random_crop_flip
from bayes_halo.errors import ConfigError

PAD = 4


def identify_crops(images, crops, pad=PAD):
    """For each crop, every (dy, dx, flip) with ``crop == mirror?(pad(image)[dy:dy+H, dx:dx+W])``.

    Plain numpy over all 81 x 2 candidates; returns a list of the matching candidates per image.
    """
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    matches = [[] for _ in range(n)]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            window = padded[:, :, dy:dy + h, dx:dx + w]
            for flip, candidate in ((False, window), (True, window[..., ::-1])):
                hits = (candidate == crops).all(axis=(1, 2, 3))
                for i in np.flatnonzero(hits):
                    matches[i].append((dy - pad, dx - pad, flip))
    return matches


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (3000, 3, 12, 12), generator=generator, dtype=torch.uint8)


def test_every_crop_is_a_shifted_padded_image_and_all_81_offsets_occur(batch):
    crops = random_crop_flip(batch, crop_draws(len(batch), torch.Generator().manual_seed(0), PAD), PAD)
    assert crops.dtype == torch.uint8 and crops.shape == batch.shape
    matches = identify_crops(batch.numpy(), crops.numpy())
    assert all(len(m) == 1 for m in matches)  # random images: exactly one explanation each
    found = [m[0] for m in matches]
    offsets = {(dy, dx) for dy, dx, _ in found}
    assert offsets == {(dy, dx) for dy in range(-PAD, PAD + 1) for dx in range(-PAD, PAD + 1)}
    flipped = np.mean([flip for _, _, flip in found])
    assert abs(flipped - 0.5) < 0.05  # 3000 fair coins: sd 0.009
    assert {flip for dy, dx, flip in found if (dy, dx) == (0, 0)} == {False, True}


def test_flips_are_exact_mirror_images_of_the_same_crop(batch):
    """Same draws without the flip (padding 0 -> offset 0): a flipped image is x[..., ::-1]."""
    out = random_crop_flip(batch, crop_draws(len(batch), torch.Generator().manual_seed(1), 0), 0).numpy()
    original = batch.numpy()
    same = (out == original).all(axis=(1, 2, 3))
    mirrored = (out == original[..., ::-1]).all(axis=(1, 2, 3))
    assert np.all(same ^ mirrored) and 0.4 < mirrored.mean() < 0.6


def test_float_and_uint8_batches_get_the_same_crops(batch):
    small = batch[:64]
    as_bytes = random_crop_flip(small, crop_draws(len(small), torch.Generator().manual_seed(2)))
    as_float = random_crop_flip(small.float() / 255, crop_draws(len(small), torch.Generator().manual_seed(2)))
    torch.testing.assert_close(as_float, as_bytes.float() / 255)


def test_same_seed_same_batches_and_resume_is_exact(batch):
    """Three epochs in one go vs one epoch, a checkpoint of both generators' states, and two resumed epochs."""
    x, y = batch[:200], torch.arange(200) % 10
    data = ArrayData("fake", x, y, x[:0], y[:0], x[:10], y[:10],
                     transform=BatchTransform((0.5,) * 3, (0.25,) * 3))

    def epochs(order, crops, count):
        out = []
        for _ in range(count):  # as the trainer: one draw per example and epoch, sliced per batch
            draws = data.augmentation_draws(len(data.x_train), crops)
            out += [data.prepare_batch(xb, draws[:, idx])
                    for xb, idx in iterate_minibatches(data.x_train, torch.arange(len(data.x_train)), 64, order)]
        return out

    def generators():
        return torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)

    reference = epochs(*generators(), 3)
    assert len(reference) == 12 and all(torch.equal(a, b) for a, b in zip(reference, epochs(*generators(), 3)))
    order, crops = generators()
    first = epochs(order, crops, 1)
    saved = (order.get_state(), crops.get_state())
    epochs(order, crops, 1)  # the interrupted session goes on; its epoch is lost
    resumed_order, resumed_crops = generators()
    resumed_order.set_state(saved[0])
    resumed_crops.set_state(saved[1])
    resumed = epochs(resumed_order, resumed_crops, 2)
    assert all(torch.equal(a, b) for a, b in zip(first + resumed, reference, strict=True))
    other = epochs(torch.Generator().manual_seed(10), torch.Generator().manual_seed(12), 1)
    assert not torch.equal(other[0], reference[0])


def test_padding_is_black_before_normalisation(batch):
    """Crop then normalise: padded pixels become ``(0 - mean) / std``, as with RandomCrop before Normalize."""
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    transform = BatchTransform(mean, std, padding=PAD)
    images = batch[:400]
    out = transform(images, crop_draws(len(images), torch.Generator().manual_seed(3), PAD))
    crops = random_crop_flip(images, crop_draws(len(images), torch.Generator().manual_seed(3), PAD), PAD)
    expected = (crops.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected.float())
    shifted_down = [i for i, m in enumerate(identify_crops(images.numpy(), crops.numpy())) if m[0][0] == -PAD]
    assert shifted_down
    top = out[shifted_down, :, :PAD, :]  # rows that came from the padding
    torch.testing.assert_close(top, (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).expand_as(top))


def test_evaluation_batches_are_only_normalised(batch):
    transform = BatchTransform((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    images = batch[:16]
    expected = (images.numpy() / 255 - np.array([0.1, 0.2, 0.3])[None, :, None, None]) / 0.5
    np.testing.assert_allclose(transform(images).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(normalize(images.float() / 255, (0.1, 0.2, 0.3), (0.5,) * 3).numpy(), expected,
                               atol=1e-6)
    with pytest.raises(ConfigError, match=r"crop draws must be \[3, 16\]"):
        transform(images, crop_draws(3, torch.Generator()))  # draws for another batch


def test_normalising_a_float_batch_leaves_it_untouched(batch):
    x = batch[:4].float() / 255
    before = x.clone()
    normalize(x, (0.5,) * 3, (0.5,) * 3)
    assert torch.equal(x, before)


def test_channel_moments_match_numpy(batch):
    mean, std = channel_moments(batch)
    unit = batch.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, unit.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, unit.std(axis=(0, 2, 3)), rtol=1e-10)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="one mean and one std per channel"):
        BatchTransform((0.5,), (0.5, 0.5))
    with pytest.raises(ConfigError, match="stds must be positive"):
        BatchTransform((0.5,), (0.0,))
    with pytest.raises(ConfigError, match="3 channels"):
        normalize(torch.zeros(1, 3, 2, 2), (0.5,), (0.5,))
    with pytest.raises(ConfigError, match="batch"):
        random_crop_flip(torch.zeros(3, 4, 4), crop_draws(3, torch.Generator()))
