"""Building, unfreezing, saving and loading models; finding the ImageNet weights."""

from __future__ import annotations

import json
import socket
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import keras
import numpy as np
import pytest

from hematolib import model as mdl
from hematolib.config import CLASS_NAMES
from hematolib.model import ModelFileError, ModelInfo, WeightsNotFoundError

SIZE = 64


@pytest.fixture(scope="module")
def small_model():
    return mdl.build(alpha=0.35, image_size=SIZE, weights=None)


def info_for(model, **kw) -> ModelInfo:
    return ModelInfo(class_names=list(CLASS_NAMES), image_size=model.input_shape[1], alpha=0.35, **kw)


def batch(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


# --- weights --------------------------------------------------------------------------------

def test_weights_come_from_hemato_weights_dir_first(tmp_path, monkeypatch):
    name = mdl.weights_filename(0.35)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / name).write_bytes(b"w")
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / name).write_bytes(b"k")
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert mdl.resolve_weights(0.35, download=False) == tmp_path / "mine" / name
    monkeypatch.delenv("HEMATO_WEIGHTS_DIR")
    assert mdl.resolve_weights(0.35, download=False) == tmp_path / "keras" / "models" / name


def test_weights_are_downloaded_the_keras_way_into_its_cache(tmp_path, monkeypatch):
    served = tmp_path / "server"
    served.mkdir()
    name = mdl.weights_filename(1.0)
    (served / name).write_bytes(b"pretend weights" * 100)
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HEMATO_WEIGHTS_DIR", raising=False)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        monkeypatch.setattr(keras.config, "keras_home", lambda: str(tmp_path / "keras"), raising=False)
        monkeypatch.setattr(mdl, "WEIGHTS_ORIGIN", f"http://127.0.0.1:{httpd.server_address[1]}/")
        path = mdl.resolve_weights(1.0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert path.name == name and path.read_bytes() == (served / name).read_bytes()
    assert path.parent.name == "models"


def test_offline_with_no_weights_says_which_file_to_put_where(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(mdl, "WEIGHTS_ORIGIN", f"http://127.0.0.1:{port}/")
    with pytest.raises(WeightsNotFoundError) as err:
        mdl.resolve_weights(0.35)
    msg = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in msg
    assert "download from" in msg and str(tmp_path / "keras" / "models") in msg
    assert "HEMATO_WEIGHTS_DIR" in msg


@pytest.mark.real_data
def test_224_weights_serve_other_input_sizes(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    a = mdl.base_of(mdl.build(alpha=0.35, image_size=224))
    b = mdl.base_of(mdl.build(alpha=0.35, image_size=96))
    for name in ("Conv1", "block_16_project", "Conv_1_bn"):
        for wa, wb in zip(a.get_layer(name).weights, b.get_layer(name).weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert not np.allclose(a.get_layer("Conv1").kernel.numpy(),
                           mdl.base_of(mdl.build(alpha=0.35, image_size=96, weights=None))
                           .get_layer("Conv1").kernel.numpy())


# --- structure --------------------------------------------------------------------------------

def test_model_maps_rgb_images_to_class_probabilities(small_model):
    probs = small_model(batch(3)).numpy()
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert not mdl.base_of(small_model).trainable
    assert [w.name for w in small_model.trainable_weights] == ["kernel", "bias"]


def test_unfreeze_top_keeps_batchnorm_frozen_and_lower_layers_fixed():
    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None)
    base = mdl.base_of(model)
    n = mdl.unfreeze_top(model, 20)
    trainable = [l for l in base.layers if l.trainable and l.weights]
    assert n == len(trainable) > 0
    assert all(not isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    assert all(not l.trainable for l in base.layers[:-20])
    assert len(model.trainable_weights) == 2 + sum(len(l.trainable_weights) for l in trainable)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. keras: input structure does not match
def test_batchnorm_stays_in_inference_mode_after_unfreezing():
    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None)
    mdl.unfreeze_top(model, 60)
    features = mdl.feature_extractor(model)
    x = batch(4)
    # batch statistics would make training=True differ; the kit's BatchNorm always uses moving stats
    np.testing.assert_allclose(features(x, training=True).numpy(), features(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.real_data
def test_flips_average_the_four_views_and_training_sees_one(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))  # random weights predict 1/4 everywhere
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True, seed=3)
    network = mdl.network_of(model)
    x = batch(3)
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    expected = np.mean([network(v).numpy() for v in views], axis=0)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mdl.with_flips(network)(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert mdl.flips(model) and not mdl.flips(mdl.build(alpha=0.35, image_size=SIZE, weights=None))
    # the network that training fits predicts one view: not the mean (the views do differ)
    assert np.abs(network(x).numpy() - expected).max() > 1e-4
    assert mdl.feature_extractor(model)(x).shape == (3, mdl.base_of(model).output_shape[-1])


@pytest.mark.real_data
def test_flips_make_a_model_blind_to_mirroring(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True, seed=4)
    x = batch(2, seed=1)
    for view in (x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]):
        np.testing.assert_allclose(model(np.ascontiguousarray(view)).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.real_data
def test_stain_normalisation_makes_a_model_blind_to_brightness_contrast_and_colour_cast(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    x = np.random.default_rng(2).uniform(40, 200, (3, SIZE, SIZE, 3)).astype("float32")
    # another lab's smear: darker, less contrast, a blue cast (per channel x -> a x + b, no clipping)
    shifted = x * np.array([0.7, 0.8, 1.1], "float32") + np.array([5, -10, 20], "float32")
    normalised = mdl.build(alpha=0.35, image_size=SIZE, stain_norm=True, seed=6)
    plain = mdl.build(alpha=0.35, image_size=SIZE, seed=6)
    assert mdl.stain_normalises(normalised) and not mdl.stain_normalises(plain)
    np.testing.assert_allclose(normalised(shifted).numpy(), normalised(x).numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(plain(shifted).numpy() - plain(x).numpy()).max() > 1e-3  # without it the shift shows
    # each crop's channels come out centred, with MobileNetV2's usual spread; a blank crop maps to 0
    seen = normalised.get_layer("mobilenetv2_preprocess")(x).numpy()
    np.testing.assert_allclose(seen.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(seen.std(axis=(1, 2)), mdl.STAIN_SCALE, rtol=1e-3)
    blank = normalised.get_layer("mobilenetv2_preprocess")(np.full((1, SIZE, SIZE, 3), 128, "float32"))
    assert np.all(np.isfinite(blank)) and np.abs(blank.numpy()).max() == 0


def test_stain_normalised_features_are_cached_apart_from_plain_ones():
    from hematolib.train import feature_store_path

    plain = mdl.build(alpha=0.35, image_size=SIZE, weights=None, seed=1)
    normalised = mdl.build(alpha=0.35, image_size=SIZE, weights=None, seed=1, stain_norm=True)
    assert feature_store_path(plain) != feature_store_path(normalised)  # same weights, other inputs


# --- save and load -----------------------------------------------------------------------------

@pytest.mark.real_data
def test_a_model_with_flips_loads_back_with_them(weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True, seed=5)
    loaded, _ = mdl.load(mdl.save(model, tmp_path / "f.keras", info_for(model)))
    assert mdl.flips(loaded)
    np.testing.assert_allclose(loaded(batch()).numpy(), model(batch()).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.real_data
def test_a_stain_normalised_model_loads_back_normalising(weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=SIZE, stain_norm=True, seed=5)
    info = info_for(model, config={"stain_norm": True})
    assert "standardises each channel" in info.preprocessing and "127.5" not in info.preprocessing
    loaded, loaded_info = mdl.load(mdl.save(model, tmp_path / "s.keras", info))
    assert mdl.stain_normalises(loaded) and loaded_info.preprocessing == info.preprocessing
    np.testing.assert_allclose(loaded(batch()).numpy(), model(batch()).numpy(), rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip_with_metadata(small_model, tmp_path):
    path = mdl.save(small_model, tmp_path / "m.keras", info_for(small_model, metrics={"test": 0.5}))
    loaded, info = mdl.load(path)
    np.testing.assert_allclose(loaded(batch()).numpy(), small_model(batch()).numpy(), rtol=1e-5)
    assert info.image_size == SIZE and info.metrics == {"test": 0.5} and info.created
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["class_names"] == list(CLASS_NAMES) and sidecar["alpha"] == 0.35
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]


def test_interrupted_save_keeps_the_previous_model(small_model, tmp_path, monkeypatch):
    path = mdl.save(small_model, tmp_path / "m.keras", info_for(small_model, metrics={"v": 1}))
    good = path.read_bytes()

    def crash(self, filepath, *a, **k):
        open(filepath, "wb").write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        mdl.save(small_model, path, info_for(small_model, metrics={"v": 2}))
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]
    assert mdl.load(path)[1].metrics == {"v": 1}


def test_missing_model_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelFileError, match="no model file there.*python -m hematolib train"):
        mdl.load(tmp_path / "nothing.keras")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "cat.keras").write_bytes(b"\xff\xd8\xff\xe0 a jpeg, renamed")
    with pytest.raises(ModelFileError, match="not a Keras .keras model file"):
        mdl.load(tmp_path / "cat.keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ModelFileError, match="zip file but not a Keras model"):
        mdl.load(tmp_path / "other.keras")


def test_plain_keras_model_without_metadata_is_refused(small_model, tmp_path):
    small_model.save(tmp_path / "plain.keras")
    with pytest.raises(ModelFileError, match="without HematoVision metadata"):
        mdl.load(tmp_path / "plain.keras")


def _rewrite_metadata(path, **changes):
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(entries[mdl.METADATA_ENTRY])
    meta.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del meta[k]
    entries[mdl.METADATA_ENTRY] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)


def test_model_for_other_classes_is_refused(small_model, tmp_path):
    path = mdl.save(small_model, tmp_path / "m.keras", info_for(small_model))
    _rewrite_metadata(path, class_names=["CAT", "DOG", "FOX", "OWL"])
    with pytest.raises(ModelFileError, match=r"predicts \['CAT', 'DOG', 'FOX', 'OWL'\], not the expected"):
        mdl.load(path)


def test_metadata_that_disagrees_with_the_model_is_refused(small_model, tmp_path):
    path = mdl.save(small_model, tmp_path / "m.keras", info_for(small_model))
    _rewrite_metadata(path, input_size=[224, 224])
    with pytest.raises(ModelFileError, match=r"inputs of shape \(64, 64, 3\).*metadata says 224x224x3"):
        mdl.load(path)
    _rewrite_metadata(path, image_size=None)
    with pytest.raises(ModelFileError, match="metadata lacks image_size"):
        mdl.load(path)


def test_lambda_layer_is_refused_by_safe_mode_unless_trusted(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    path = mdl.save(model, tmp_path / "lambda.keras", info_for(model))
    with pytest.raises(ModelFileError, match="Lambda layer.*safe_mode=False only if you trust"):
        mdl.load(path)
    loaded, _ = mdl.load(path, safe_mode=False)
    assert loaded(batch()).shape == (2, 4)
