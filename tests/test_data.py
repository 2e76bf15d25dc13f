import gzip

import numpy as np
import pytest
import torch

from rlgan_core.builtin.data import MNIST, Digits
from rlgan_core.classifier import digits_split, load_classifier, load_mnist_classifier, mnist_split


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as file:  # closed here, so the data is on disk
        file.write(data)


def test_mnist_from_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(12) % 10)
    source = MNIST(str(tmp_path))
    x = source.tensors()["x"]
    assert source.shape == (784,) and x.shape == (12, 784)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(source.tensors()["label"], torch.arange(12) % 10)


def test_mnist_from_npz_and_bad_files(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((5, 28, 28), np.uint8), y_train=np.ones(5))
    assert MNIST(str(tmp_path / "mnist.npz")).tensors()["x"].shape == (5, 784)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="truncated"):
        MNIST(str(tmp_path))
    with pytest.raises(ValueError, match="expected an .npz file or a folder"):
        MNIST(str(tmp_path / "missing.bin"))


def test_mnist_test_split_from_files(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((4, 28, 28), 255))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(4))
    source = MNIST(str(tmp_path), split="test")
    assert torch.equal(source.tensors()["x"], torch.ones(4, 784))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        MNIST(str(tmp_path))
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="'x_test'"):
        MNIST(str(tmp_path / "mnist.npz"), split="test")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        MNIST(str(tmp_path / "mnist.npz"), split="all")


def test_bundled_mnist_is_real_28x28_digits_split_in_two():
    train, test = MNIST(), MNIST(split="test")
    x, labels = train.tensors()["x"], train.tensors()["label"]
    assert x.shape == (4000, 784) and test.tensors()["x"].shape == (1000, 784)
    assert x.min() == -1 and x.max() == 1
    assert (torch.bincount(test.tensors()["label"]) - torch.bincount(labels) / 4).abs().max() <= 1  # stratified
    # no held-out digit is a training digit
    assert not (torch.cdist(test.tensors()["x"][:200], x).min(1).values == 0).any()
    assert len(MNIST(split="all").tensors()["x"]) == 5000 and len(MNIST(limit=10).tensors()["x"]) == 10


def test_the_mnist_classifier_reads_held_out_digits_and_gives_the_floor():
    x, y = map(torch.from_numpy, mnist_split("test"))
    accuracy = (load_mnist_classifier()(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.95
    source = MNIST()
    floor = source.metrics(x)  # held-out real digits against the training digits
    assert floor["classes_covered"] == 10
    one_class = source.metrics(x[y == 3])
    assert one_class["classes_covered"] == 1 and one_class["frechet_distance"] > 20 * floor["frechet_distance"]


def test_digit_class_scores_8x8_and_28x28_digits_with_their_own_classifier():
    from rlgan_core.builtin.rewards import DigitClass

    reward = DigitClass(3)
    for split in (digits_split, mnist_split):
        x, y = map(torch.from_numpy, split("test"))
        log_p3 = reward(x, None)
        assert log_p3.shape == (len(x),) and (log_p3 <= 0).all()
        assert log_p3[y == 3].mean() > -0.2 > -5 > log_p3[y != 3].mean()
    with pytest.raises(ValueError, match="64 values per sample.*784.*these samples have 100"):
        reward(torch.zeros(2, 10, 10), None)


def test_digits_are_scaled_and_split():
    train, test = Digits("train"), Digits("test")
    assert train.tensors()["x"].shape == (1437, 64) and test.tensors()["x"].shape == (360, 64)
    assert train.tensors()["x"].min() == -1 and train.tensors()["x"].max() == 1


def test_shipped_classifier_accuracy_on_held_out_digits():
    x, y = map(torch.from_numpy, digits_split("test"))
    accuracy = (load_classifier()(x).argmax(1) == y).float().mean().item()
    print(f"held-out accuracy {accuracy:.4f}")
    assert accuracy >= 0.95


def test_digits_metrics_separate_real_from_noise():
    source = Digits()
    real = source.metrics(Digits("test").tensors()["x"])
    noise = source.metrics(torch.rand(360, 64) * 2 - 1)
    assert real["classes_covered"] == 10 and real["frechet_distance"] < noise["frechet_distance"] / 10


def test_mode_statistics_on_hand_made_points():
    """High quality: within 3 std of the nearest mode (exactly 3 std counts); a mode is covered when
    it is the nearest mode of at least one high-quality sample."""
    from rlgan_core.metrics import mode_statistics

    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    std = 0.5
    samples = torch.tensor([
        [1.5, 0.0],      # exactly 3 std from mode 0: high quality, covers it
        [10.0, 1.5001],  # just beyond 3 std from mode 1: low quality, mode 1 stays uncovered
        [5.0, 5.0],      # far from every mode
        [0.0, 10.2],     # near mode 2
    ])
    stats = mode_statistics(samples, means, std)
    assert stats == {"modes_covered": 2.0, "modes_total": 3.0, "high_quality_fraction": 0.5}


def test_the_default_render_draws_images_and_points_and_warns_for_other_shapes(tmp_path):
    from rlgan_core.datasource import DataSource

    source = DataSource()
    source.render(torch.rand(12, 36) * 2 - 1, tmp_path / "images.png")  # flattened 6 x 6 images
    source.render(torch.randn(50, 2), tmp_path / "points.png")
    assert (tmp_path / "images.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "points.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.warns(UserWarning, match=r"DataSource draws no pictures of samples of shape \(20,\)"):
        source.render(torch.randn(5, 20), tmp_path / "tokens.png")
    assert not (tmp_path / "tokens.png").exists()
