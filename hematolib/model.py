"""Build MobileNetV2 with ImageNet weights and a classification head; find its parts; unfreeze."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .config import CLASS_NAMES, SMEAR_SIZE, env_path
from .model_file import ModelFileError

# Keras's own download location for MobileNetV2 weights (keras.applications.mobilenet_v2).
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
BASE_NAME = "mobilenetv2"  # name of the nested base model inside the kit's models


class WeightsNotFoundError(FileNotFoundError):
    """The ImageNet weights are neither on disk nor downloadable; the message says where to put them."""


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


def build_network(alpha: float = 0.35, image_size: int = 128, num_classes: int = len(CLASS_NAMES),
                  dropout: float = 0.2, weights: str | Path | None = "imagenet"):
    """The network notebook 03 writes in Keras: cell crops (batch, S, S, 3), RGB 0..255 ->
    probabilities (batch, num_classes).

    Rescaling to MobileNetV2's -1..1, the frozen base (called with training=False, so BatchNorm
    stays in inference mode), global average pooling, and a head (dropout, dense softmax).
    weights: "imagenet" (found by `resolve_weights`), a file path, or None (random).
    """
    import keras
    from keras import layers

    if weights == "imagenet":
        weights = resolve_weights(alpha)
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=None if weights is None else str(weights),
                                          name=BASE_NAME)
    base.trainable = False
    head = keras.Sequential([layers.Dropout(dropout), layers.Dense(num_classes, activation="softmax")],
                            name="head")
    cells = keras.Input((image_size, image_size, 3), name="cell")
    x = layers.Rescaling(1 / 127.5, offset=-1)(cells)
    x = base(x, training=False)
    features = layers.GlobalAveragePooling2D()(x)
    return keras.Model(cells, head(features), name="network")


def assemble(network, crop: bool = True, flips: bool = True):
    """A kit model around `network`: whole smears (batch, 240, 320, 3) in, cropped around the white
    cell (`layers.CellCrop`) with `crop`; with `flips`, the mean prediction over four flipped views
    (`layers.FlipStack`, `layers.FlipMean`). Shares the network's weights."""
    import keras

    from .layers import CellCrop, FlipMean, FlipStack

    side = int(network.input_shape[1])
    inputs = keras.Input((*SMEAR_SIZE, 3) if crop else (side, side, 3), name="image")
    x = CellCrop(side)(inputs) if crop else inputs
    x = network(FlipStack()(x)) if flips else network(x)
    outputs = FlipMean()(x) if flips else x
    return keras.Model(inputs, outputs, name=f"hematovision_{network.name}" + ("_crop" if crop else "")
                       + ("_flips" if flips else ""))


def build(alpha: float = 0.35, image_size: int = 128, num_classes: int = len(CLASS_NAMES),
          dropout: float = 0.2, weights: str | Path | None = "imagenet", crop: bool = False,
          flips: bool = False):
    """`assemble(build_network(...))`: the kit's model, untrained head, frozen base.

    Input: float RGB in 0..255, whole smears (batch, 240, 320, 3) with `crop`, else
    (batch, image_size, image_size, 3). Output: (batch, num_classes) probabilities.
    """
    return assemble(build_network(alpha, image_size, num_classes, dropout, weights), crop=crop, flips=flips)


def _models_inside(model) -> list:
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def network_of(model):
    """The network inside a kit model: cell crops (batch, S, S, 3), 0..255 -> probabilities.
    A network (`build_network`) is its own. Training it trains the model: they share the weights."""
    inner = _models_inside(model)
    if len(inner) == 2:  # the base and the head: this is a network
        return model
    if len(inner) == 1 and len(_models_inside(inner[0])) == 2:
        return inner[0]
    raise ModelFileError(f"{model.name}: not a HematoVision model (no network of a base and a head inside).")


class Parts(NamedTuple):
    """The layers of a kit network, in the order they run."""

    preprocess: Any  # Rescaling to MobileNetV2's -1..1
    base: Any  # MobileNetV2 without its top
    pool: Any  # GlobalAveragePooling2D: (batch, h, w, channels) -> (batch, channels)
    head: Any  # Sequential: Dropout, Dense softmax


def parts_of(model) -> Parts:
    """The preprocessing, base, pooling and head of a kit model (or network), found by their types."""
    import keras

    network = network_of(model)
    layers = [layer for layer in network.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = (keras.layers.Rescaling, keras.Model, keras.layers.GlobalAveragePooling2D, keras.Sequential)
    if len(layers) != 4 or not all(isinstance(layer, kind) for layer, kind in zip(layers, kinds)):
        raise ModelFileError(f"{network.name}: not laid out as a kit network (rescaling, base, pooling, head).")
    return Parts(*layers)


def base_of(model):
    """The MobileNetV2 base inside a kit model (or network)."""
    return parts_of(model).base


def head_of(model):
    """The head of a kit model (or network): pooled features (batch, channels) -> probabilities."""
    return parts_of(model).head


def features_of(model):
    """A model sharing the network's layers: cell crops (batch, S, S, 3) -> pooled features (batch, channels)."""
    import keras

    network = network_of(model)
    return keras.Model(network.input, parts_of(network).pool.output, name="features")


def input_size(model) -> tuple[int, int]:
    """(height, width) of the images a kit model takes."""
    return tuple(int(d) for d in model.input_shape[1:3])


def network_size(model) -> int:
    """Side of the square crops the network inside a kit model sees."""
    return int(network_of(model).input_shape[1])


def is_cropping(model) -> bool:
    """Whether the model crops around the white cell itself."""
    from .layers import CellCrop

    return any(isinstance(layer, CellCrop) for layer in model.layers)


def is_flipping(model) -> bool:
    """Whether the model averages its predictions over four flipped views."""
    from .layers import FlipStack

    return any(isinstance(layer, FlipStack) for layer in model.layers)


def network_view(model, images):
    """What the network sees: images (batch, H, W, 3) at the input size -> (batch, S, S, 3), 0..255."""
    from .layers import CellCrop

    croppers = [layer for layer in model.layers if isinstance(layer, CellCrop)]
    return croppers[0](images) if croppers else images


def with_flips(network):
    """`network` averaged over the four flips of its input, as a kit model with `flips` predicts."""
    return assemble(network, crop=False, flips=True)


def describe(model) -> str:
    """Two lines on a kit model: the base's layers and parameters, and what is trainable."""
    base = base_of(model)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = model.count_params()
    unfrozen = sum(1 for layer in base.layers if layer.trainable and layer.weights)
    return (f"MobileNetV2 base: {len(base.layers)} layers, {base.count_params():,} parameters, "
            f"{unfrozen} layers with weights trainable\n"
            f"whole model: {total:,} parameters, {trainable:,} trainable ({trainable / total:.1%})")


def unfreeze(base, n_layers: int | None = None) -> int:
    """Make the top `n_layers` layers of `base` (None: all) trainable, BatchNorm excepted; return
    how many layers with weights that made trainable. Takes effect at the next `compile`."""
    from keras import layers

    base.trainable = True
    n_layers = len(base.layers) if n_layers is None else max(0, min(n_layers, len(base.layers)))
    cut = len(base.layers) - n_layers
    unfrozen = 0
    for i, layer in enumerate(base.layers):
        trainable = i >= cut and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += bool(trainable and layer.weights)
    return unfrozen
