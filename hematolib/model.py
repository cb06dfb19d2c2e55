"""Build MobileNetV2 with ImageNet weights and a classification head; unfreeze; save and load safely."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .config import CLASS_NAMES, env_path
from .files import atomic_path, write_text_atomic

# Keras's own download location for MobileNetV2 weights (keras.applications.mobilenet_v2).
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
BASE_NAME = "mobilenetv2"  # name of the nested base model inside the kit's models
PREPROCESSING = "RGB 0..255 in; the model's first layer maps x -> x/127.5 - 1 (MobileNetV2)"
CROP_PREPROCESSING = ("RGB 0..255 at the input size; the model crops around the stained white cell, "
                      "resizes the crop to image_size, then maps x -> x/127.5 - 1 (MobileNetV2)")
STAIN_SCALE = 0.5  # StainNormalise's output spread: about that of x/127.5 - 1 on ImageNet photographs
SMEAR_SIZE = (240, 320)  # (height, width) of the dataset's images: the input of cropping models
METADATA_ENTRY = "hematovision.json"  # metadata is stored inside the .keras zip as well
FORMAT_VERSION = 1


class WeightsNotFoundError(FileNotFoundError):
    """The ImageNet weights are neither on disk nor downloadable; the message says where to put them."""


class ModelFileError(ValueError):
    """A saved model that cannot be used as asked; the message says what is wrong."""


def weights_filename(alpha: float) -> str:
    """The file name Keras gives MobileNetV2's ImageNet no-top weights at 224 px."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224_no_top.h5"


def keras_cache_dir() -> Path:
    """Keras's download cache: `$KERAS_HOME/models`, else `~/.keras/models`."""
    return (env_path("KERAS_HOME") or Path.home() / ".keras") / "models"


def resolve_weights(alpha: float, download: bool = True) -> Path:
    """The local path of the ImageNet weights for `alpha`.

    Looks in `HEMATO_WEIGHTS_DIR`, then Keras's cache, then downloads them the way Keras does
    (into its cache). The 224-px files serve every input size: convolution weights do not
    depend on it.
    """
    name = weights_filename(alpha)
    folder = env_path("HEMATO_WEIGHTS_DIR")
    places = ([folder / name] if folder else []) + [keras_cache_dir() / name]
    for place in places:
        if place.is_file() and place.stat().st_size > 0:
            return place
    error = "downloading was not tried"
    if download:
        import keras

        try:
            return Path(keras.utils.get_file(name, WEIGHTS_ORIGIN + name, cache_subdir="models"))
        except Exception as exc:  # noqa: BLE001 - any failure becomes one clear message
            error = f"the download from {WEIGHTS_ORIGIN} failed: {exc}"
    looked = ", ".join(str(p.parent) for p in places)
    raise WeightsNotFoundError(
        f"MobileNetV2 ImageNet weights for alpha={alpha} not found (looked in {looked}; {error}). "
        f"Put {name} in {keras_cache_dir()}/ or in a folder named by HEMATO_WEIGHTS_DIR.")


def build(alpha: float = 0.35, image_size: int = 224, num_classes: int = len(CLASS_NAMES),
          dropout: float = 0.2, weights: str | Path | None = "imagenet", seed: int | None = 0,
          crop: bool = False, flips: bool = False, stain_norm: bool = False):
    """MobileNetV2 (frozen, BatchNorm in inference mode) + pooling + dropout + softmax head.

    Input: float RGB in 0..255, (batch, image_size, image_size, 3); with `crop`, whole smear
    images (batch, 240, 320, 3) that the model's first layer crops around the white cell and
    resizes to image_size. Output: (batch, num_classes) probabilities.
    weights: "imagenet" (found by `resolve_weights`), a file path, or None.
    seed: seeds Keras's initializers, so the same seed builds the same model (None: unseeded).
    flips: test-time augmentation inside the model: it predicts each image (or crop) as it is,
    mirrored, upside down and both, and outputs the mean. A cell has no up or left, so the four
    views are equally valid; training (`network_of`) sees one view at a time.
    stain_norm: instead of MobileNetV2's fixed x/127.5 - 1, standardise each image's (or crop's)
    channels on their own mean and spread (`StainNormalise`), so a smear's brightness, contrast
    and colour cast, which differ between stainings and microscopes, never reach the network.
    """
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    if weights == "imagenet":
        weights = resolve_weights(alpha)
    if crop:
        from .locate import cell_crop_layer

        inputs = keras.Input((*SMEAR_SIZE, 3), name="image")
        x = cell_crop_layer(image_size)(inputs)
    else:
        inputs = x = keras.Input((image_size, image_size, 3), name="image")
    if flips:
        x = register_layers()["FlipStack"](name="flip_stack")(x)
    if stain_norm:  # same layer name: network_of, Grad-CAM and AdaBN find the preprocessing by it
        x = register_layers()["StainNormalise"](name="mobilenetv2_preprocess")(x)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1, name="mobilenetv2_preprocess")(x)
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=None, name=BASE_NAME)
    if weights is not None:
        base.load_weights(str(weights))
    base.trainable = False
    x = base(x, training=False)  # BatchNorm stays in inference mode, even when unfrozen later
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    if flips:
        outputs = register_layers()["FlipMean"](name="flip_mean")(outputs)
    return keras.Model(inputs, outputs, name=f"hematovision_mobilenetv2_{alpha}_{image_size}"
                       + ("_crop" if crop else "") + ("_flips" if flips else ""))


_LAYERS: dict[str, type] = {}  # the kit's custom layers, defined and registered with Keras on first use


def register_layers() -> dict[str, type]:
    """Define the kit's custom layers (CellCrop, FlipStack, FlipMean, StainNormalise) and register them with
    Keras, which needs them before loading a model that uses them. Returns them by name."""
    if _LAYERS:
        return _LAYERS
    import keras
    from keras import ops

    from .locate import register

    @keras.saving.register_keras_serializable(package="hematolib")
    class FlipStack(keras.layers.Layer):
        """(batch, S, S, 3) -> (4 x batch, S, S, 3): the images, mirrored, upside down, and both."""

        def call(self, x):
            mirrored, upside_down = ops.flip(x, axis=2), ops.flip(x, axis=1)
            return ops.concatenate([x, mirrored, upside_down, ops.flip(mirrored, axis=1)], axis=0)

        def compute_output_shape(self, shape):
            return (None if shape[0] is None else 4 * shape[0], *shape[1:])

    @keras.saving.register_keras_serializable(package="hematolib")
    class FlipMean(keras.layers.Layer):
        """(4 x batch, classes) -> (batch, classes): the mean prediction over each image's 4 views."""

        def call(self, probs):
            return ops.mean(ops.reshape(probs, (4, -1, probs.shape[-1])), axis=0)

        def compute_output_shape(self, shape):
            return (None if shape[0] is None else shape[0] // 4, shape[-1])

    @keras.saving.register_keras_serializable(package="hematolib")
    class StainNormalise(keras.layers.Layer):
        """(batch, S, S, 3) RGB 0..255 -> each image's channels minus their own mean, over their own
        standard deviation (at least 1, so a blank image maps to 0), times STAIN_SCALE: per-image
        stain normalisation. A change of brightness, contrast or colour balance (any x -> a x + b
        per channel, a > 0, short of clipping) leaves the output as it was."""

        def call(self, x):
            mean = ops.mean(x, axis=(1, 2), keepdims=True)
            spread = ops.maximum(ops.std(x, axis=(1, 2), keepdims=True), 1.0)
            return (x - mean) / spread * STAIN_SCALE

    _LAYERS.update(CellCrop=register(), FlipStack=FlipStack, FlipMean=FlipMean, StainNormalise=StainNormalise)
    return _LAYERS


def input_size(model) -> tuple[int, int]:
    """(height, width) of the images a kit model takes."""
    return tuple(int(d) for d in model.input_shape[1:3])


def crops(model) -> bool:
    """True when the model crops around the white cell itself."""
    return any(layer.name == "cell_crop" for layer in model.layers)


def flips(model) -> bool:
    """True when the model averages its predictions over flipped views (`build(flips=True)`)."""
    return any(layer.name == "flip_stack" for layer in model.layers)


def stain_normalises(model) -> bool:
    """True when the model standardises each image's colours itself (`build(stain_norm=True)`)."""
    return type(model.get_layer("mobilenetv2_preprocess")).__name__ == "StainNormalise"


def network_view(model, images):
    """What the base sees: images (batch, H, W, 3) at the input size -> (batch, S, S, 3), 0..255."""
    return model.get_layer("cell_crop")(images) if crops(model) else images


def base_of(model):
    """The nested MobileNetV2 base of a kit model."""
    return model.get_layer(BASE_NAME)


def feature_extractor(model):
    """A model sharing `model`'s layers that maps images to pooled features (batch, channels)
    (of the image as it is, for a model with `flips`)."""
    import keras

    if not flips(model):
        return keras.Model(model.input, model.get_layer("pool").output, name="features")
    x = network_view(model, model.input)
    return keras.Model(model.input, network_of(model, pooled=True)(x), name="features")


def network_of(model, pooled: bool = False):
    """A model sharing `model`'s layers after the crop: network-view images (batch, S, S, 3), 0..255
    -> probabilities (batch, classes), or pooled features (batch, channels) with `pooled`.

    For a cropping model this is what training sees when the crops are cached; for other models
    it is the model itself (or its feature extractor). It never flips: a model with `flips`
    trains on one view per image and averages the four views only when it predicts.
    """
    import keras

    if not crops(model) and not flips(model):
        return feature_extractor(model) if pooled else model
    base = base_of(model)
    inputs = keras.Input(base.input_shape[1:], name="cell")
    x = model.get_layer("mobilenetv2_preprocess")(inputs)
    x = model.get_layer("pool")(base(x, training=False))
    if pooled:
        return keras.Model(inputs, x, name="cell_features")
    x = model.get_layer("classifier")(model.get_layer("dropout")(x))
    return keras.Model(inputs, x, name="cell_network")


def with_flips(network):
    """A model averaging `network`'s predictions over the four flips of its input, as a model built
    with `flips=True` does: for scoring a single-view network (`network_of`) the way the kit predicts."""
    import keras

    layers = register_layers()
    inputs = keras.Input(network.input_shape[1:], name="views")
    outputs = layers["FlipMean"](name="flip_mean")(network(layers["FlipStack"](name="flip_stack")(inputs)))
    return keras.Model(inputs, outputs, name=f"{network.name}_flips")


def head_of(model):
    """A model sharing `model`'s dropout and classifier layers that maps features to probabilities."""
    import keras

    features = keras.Input(model.get_layer("pool").output.shape[1:], name="features")
    x = model.get_layer("dropout")(features)
    return keras.Model(features, model.get_layer("classifier")(x), name="head")


def describe(model) -> str:
    """Two lines on a kit model: the base's layers and parameters, and what is trainable."""
    base = base_of(model)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = model.count_params()
    unfrozen = sum(1 for layer in base.layers if layer.trainable and layer.weights)
    return (f"MobileNetV2 base: {len(base.layers)} layers, {base.count_params():,} parameters, "
            f"{unfrozen} layers with weights trainable\n"
            f"whole model: {total:,} parameters, {trainable:,} trainable ({trainable / total:.1%})")


def unfreeze_top(model, n_layers: int | None) -> int:
    """Make the top `n_layers` layers of the base (None: all) trainable, BatchNorm excepted;
    return how many layers with weights that made trainable.

    BatchNorm layers stay frozen (and in inference mode): with small batches their statistics
    would otherwise drift and undo what the base learned on ImageNet.
    """
    from keras import layers

    base = base_of(model)
    base.trainable = True
    n_layers = len(base.layers) if n_layers is None else max(0, min(n_layers, len(base.layers)))
    cut = len(base.layers) - n_layers
    unfrozen = 0
    for i, layer in enumerate(base.layers):
        trainable = i >= cut and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += bool(trainable and layer.weights)
    return unfrozen


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
    created: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        self.input_size = list(self.input_size or (SMEAR_SIZE if self.crop else (self.image_size,) * 2))
        if self.crop and self.preprocessing == PREPROCESSING:
            self.preprocessing = CROP_PREPROCESSING
        if self.config.get("stain_norm") and self.preprocessing in (PREPROCESSING, CROP_PREPROCESSING):
            self.preprocessing = self.preprocessing.replace(
                "maps x -> x/127.5 - 1 (MobileNetV2)", "standardises each channel on its own mean and spread")

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


def save(model, path: str | Path, info: ModelInfo) -> Path:
    """Save `model` and its metadata atomically: an interrupted save leaves the old model intact.

    The model is written to a temporary file in the same folder, the metadata is added inside
    it, and one rename puts it in place; the readable `name.json` sidecar follows.
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
                    "size); save it with hematolib.model.save to use it here.")
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

    register_layers()  # the kit's layers must be known to Keras before loading
    path = Path(path)
    info = read_info(path)
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
