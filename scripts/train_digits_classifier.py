"""Train the digits classifier shipped in rlgan_core/assets and print its held-out accuracy.

    python scripts/train_digits_classifier.py
"""

import torch
from safetensors.torch import save_file

from rlgan_core.classifier import WEIGHTS, DigitsClassifier, digits_split


def main() -> None:
    torch.manual_seed(0)
    train_x, train_y = map(torch.from_numpy, digits_split("train"))
    test_x, test_y = map(torch.from_numpy, digits_split("test"))
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(150):
        model.train()
        for batch in torch.randperm(len(train_x), generator=generator).split(64):
            # light noise makes the features robust to the imperfect samples a GAN produces
            noisy = train_x[batch] + 0.1 * torch.randn(train_x[batch].shape, generator=generator)
            loss = torch.nn.functional.cross_entropy(model(noisy), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"held-out accuracy: {accuracy:.4f} on {len(test_x)} digits")
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, WEIGHTS)
    print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
