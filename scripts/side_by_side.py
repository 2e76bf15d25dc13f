"""Put PNG pictures side by side, each under a title, into one PNG.

    python scripts/side_by_side.py before.png after.png --titles "before" "after" -o both.png
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pictures", nargs="+")
    parser.add_argument("--titles", nargs="+", required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    if len(args.titles) != len(args.pictures):
        parser.error("give one title per picture")
    figure, axes = plt.subplots(1, len(args.pictures), figsize=(3.2 * len(args.pictures), 3.6), squeeze=False)
    for axis, picture, title in zip(axes[0], args.pictures, args.titles):
        axis.imshow(plt.imread(picture), cmap="gray")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
