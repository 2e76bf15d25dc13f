"""``rlgan new-plugin``: a ready plugin distribution of one kind, from the templates beside this file.

``common/`` holds what every plugin distribution has (``pyproject.toml`` with the ``rlgan`` entry
point, a README, a ``.gitignore`` for build outputs), each kind's folder its plugin module and a test that runs the conformance kit
(``rlgan_core.testing``) and trains a few steps with the plugin; pip installs the result as it is.  ``{{dist}}``, ``{{module}}``,
``{{short}}`` and ``{{title}}`` in them are filled in.
"""

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent
KINDS = ("reward", "model", "data", "strategy")


def new_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the distribution ``name`` (such as ``rlgan-sparkle``) of a ``kind`` plugin under ``parent``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ValueError(f"{name!r} is not a distribution name (letters, digits, '-' and '_', starting with a letter)")
    module = name.replace("-", "_").lower()
    short = re.sub(r"^rlgan_", "", module)
    fields = {"dist": name, "module": module, "short": short, "title": class_name(name)}
    target = parent / name
    if target.exists():
        raise FileExistsError(f"{target} exists already")
    for root in (TEMPLATES / "common", TEMPLATES / kind):
        for template in sorted(root.rglob("*.tmpl")):
            path = target / str(template.relative_to(root).with_suffix("")).replace("MODULE", module)
            if path.name == "gitignore":  # shipped without its dot, which package data globs skip
                path = path.with_name(".gitignore")
            path.parent.mkdir(parents=True, exist_ok=True)
            text = template.read_text()
            for key, value in fields.items():
                text = text.replace("{{" + key + "}}", value)
            path.write_text(text)
    return target


def class_name(name: str) -> str:
    """The plugin class's name from the distribution's: ``rlgan-conv-policy`` and
    ``rlgan-ConvPolicy`` both give ``ConvPolicy`` (capitals the user wrote are kept)."""
    words = re.split(r"[-_]+", re.sub(r"^rlgan[-_]", "", name, flags=re.IGNORECASE))
    return "".join(word[:1].upper() + word[1:] for word in words if word)
