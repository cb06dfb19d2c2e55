"""HematoVision helper library: `import hematolib as hl`, then `hl.data`, `hl.model`, ...

Submodules load on first use, so importing the package is instant and TensorFlow is only
imported by the modules that need it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["augment", "cli", "config", "course", "data", "download", "evaluate", "explain",
           "export", "files", "images", "inference", "locate", "model", "pbc", "plots", "recipe",
           "synthetic", "train", "widgets"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'hematolib' has no attribute {name!r}")
