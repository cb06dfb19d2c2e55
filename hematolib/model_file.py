"""What a saved .keras model holds (the network and the kit's metadata) and how it is written and read."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import CLASS_NAMES, SMEAR_SIZE
from .files import atomic_path, write_text_atomic

PREPROCESSING = "RGB 0..255 in; the model's first layer maps x -> x/127.5 - 1 (MobileNetV2)"
CROP_PREPROCESSING = ("RGB 0..255 at the input size; the model crops around the stained white cell, "
                      "resizes the crop to image_size, then maps x -> x/127.5 - 1 (MobileNetV2)")
METADATA_ENTRY = "hematovision.json"  # metadata is stored inside the .keras zip as well
FORMAT_VERSION = 2  # 2: the network (base and head) nested inside the model


class ModelFileError(ValueError):
    """A saved model that cannot be used as asked; the message says what is wrong."""


@dataclass
class ModelInfo:
    """What a saved model was trained for and on; stored next to and inside the .keras file."""

    class_names: list[str]
    image_size: int  # side of the square the network sees
    alpha: float
    input_size: list[int] = field(default_factory=list)  # [height, width] the model takes
    crop: bool = False  # the model crops around the white cell itself
    preprocessing: str = PREPROCESSING
    data_fingerprint: str = ""
    synthetic_data: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    credits: list[str] = field(default_factory=list)  # of the datasets it was trained on, with their licences
    further_training: str = ""  # what trained it after `config`'s recipe, if anything
    augmentation: dict[str, Any] = field(default_factory=dict)  # the random layers it was fine-tuned through
    created: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        self.input_size = list(self.input_size or (SMEAR_SIZE if self.crop else (self.image_size,) * 2))
        if self.crop and self.preprocessing == PREPROCESSING:
            self.preprocessing = CROP_PREPROCESSING

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "ModelInfo":
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("class_names", "image_size", "alpha") if k not in d]
        if missing:
            raise ModelFileError(f"{source}: metadata lacks {', '.join(missing)}.")
        return cls(**{k: v for k, v in d.items() if k in known})


def metadata_path(path: str | Path) -> Path:
    """The sidecar metadata file of a model: `name.keras` -> `name.json`."""
    return Path(path).with_suffix(".json")


def save(model, path: str | Path, info: ModelInfo, extras: dict[str, bytes] | None = None) -> Path:
    """Save `model` and its metadata atomically: an interrupted save leaves the old model intact.

    The model is written to a temporary file in the same folder, the metadata (and any `extras`,
    name -> bytes, such as `familiar.ENTRY`) are added inside it, and one rename puts it in place;
    the readable `name.json` sidecar follows.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: model files must end in .keras.")
    path.parent.mkdir(parents=True, exist_ok=True)
    info.created = info.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = json.dumps(asdict(info), indent=2, default=float)
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(METADATA_ENTRY, text)
            for name, data in (extras or {}).items():
                zf.writestr(name, data)
    write_text_atomic(metadata_path(path), text)
    return path


def read_info(path: str | Path) -> ModelInfo:
    """The metadata of a saved model, read from inside the .keras file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no model file there. Train one with `python -m hematolib "
                             "train` or run notebooks 03-04, or give the path of a .keras file.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "config.json" not in names:
                raise ModelFileError(f"{path}: this is a zip file but not a Keras model.")
            if METADATA_ENTRY not in names:
                raise ModelFileError(
                    f"{path}: a Keras model without HematoVision metadata (class names, input "
                    "size); save it with hematolib.model_file.save to use it here.")
            raw = zf.read(METADATA_ENTRY)
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: not a Keras .keras model file (not a zip archive; "
                             "damaged, or another format).") from None
    try:
        return ModelInfo.from_dict(json.loads(raw), str(path))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelFileError(f"{path}: the metadata is damaged ({exc}).") from None


def load(path: str | Path, class_names: tuple[str, ...] = CLASS_NAMES, safe_mode: bool = True):
    """Load a saved model and its metadata, checking that they fit each other and `class_names`.

    safe_mode: Keras refuses to run code stored in the file (Lambda layers); set False only for
    a file you trust. Returns (model, ModelInfo).
    """
    import keras

    from . import layers  # noqa: F401 - registers the kit's layers with Keras before loading

    path = Path(path)
    info = read_info(path)
    if info.format_version < FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: saved by an earlier version of the kit (model format {info.format_version}, this kit "
            f"reads {FORMAT_VERSION}), whose layers were laid out differently. Train it again: "
            "`python -m hematolib train`, or notebooks 03 and 04.")
    if list(info.class_names) != list(class_names):
        raise ModelFileError(f"{path}: the model predicts {info.class_names}, not the expected "
                             f"{list(class_names)}.")
    try:
        model = keras.models.load_model(path, safe_mode=safe_mode, compile=False)
    except ValueError as exc:
        if "lambda" in str(exc).lower() or "safe_mode" in str(exc):
            raise ModelFileError(
                f"{path}: the model contains a Lambda layer (stored Python code), which safe mode "
                "refuses to run. Load it with safe_mode=False only if you trust who made it.") \
                from None
        raise ModelFileError(f"{path}: Keras cannot load this model ({exc}).") from None
    shape = tuple(model.input_shape[1:])
    if shape != (*info.input_size, 3):
        raise ModelFileError(f"{path}: the model takes inputs of shape {shape}, but its metadata "
                             f"says {info.input_size[0]}x{info.input_size[1]}x3.")
    if model.output_shape[-1] != len(class_names):
        raise ModelFileError(f"{path}: the model has {model.output_shape[-1]} outputs, "
                             f"expected {len(class_names)}.")
    return model, info
