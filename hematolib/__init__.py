"""HematoVision helper library: `import hematolib as hl`, then `hl.data`, `hl.model`, ...

The names most used have a short form at the top: `hl.Config`, `hl.open_dataset`, `hl.build`,
`hl.load`, `hl.Predictor`, `hl.set_seed`. Submodules load on first use, so importing the package
is instant and TensorFlow is only imported by the modules that need it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["augment", "cache", "cli", "config", "course", "data", "download", "errors", "evaluate",
           "explain", "export", "familiar", "files", "grade", "gradebook", "home", "images", "inference",
           "labs", "layers", "locate", "model", "model_file", "originals", "pbc", "pipelines", "plots",
           "recipe", "scoring", "splits", "synthetic", "train", "uploads", "widget_html", "widgets"]


SHORTCUTS = {"Config": "config", "open_dataset": "data", "build": "model", "load": "model_file",
             "Predictor": "inference", "set_seed": "train"}  # hl.<name> -> hl.<module>.<name>


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    if name in SHORTCUTS:
        return getattr(importlib.import_module(f"{__name__}.{SHORTCUTS[name]}"), name)
    raise AttributeError(f"module 'hematolib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *SHORTCUTS, "__version__"])
