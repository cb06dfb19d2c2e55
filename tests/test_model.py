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

from hematolib import model as mdl, model_file
from hematolib.config import CLASS_NAMES
from hematolib.model import WeightsNotFoundError
from hematolib.model_file import ModelFileError, ModelInfo

pytestmark = pytest.mark.model

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
    assert mdl.head_of(small_model).trainable_weights == small_model.trainable_weights


def test_unfreeze_top_keeps_batchnorm_frozen_and_lower_layers_fixed():
    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None)
    base = mdl.base_of(model)
    n = mdl.unfreeze(mdl.base_of(model), 20)
    trainable = [l for l in base.layers if l.trainable and l.weights]
    assert n == len(trainable) > 0
    assert all(not isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    assert all(not l.trainable for l in base.layers[:-20])
    assert len(model.trainable_weights) == 2 + sum(len(l.trainable_weights) for l in trainable)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. keras: input structure does not match
def test_batchnorm_stays_in_inference_mode_after_unfreezing():
    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None)
    mdl.unfreeze(mdl.base_of(model), 60)
    features = mdl.features_of(model)
    x = batch(4)
    # batch statistics would make training=True differ; the kit's BatchNorm always uses moving stats
    np.testing.assert_allclose(features(x, training=True).numpy(), features(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.real_data
def test_flips_average_the_four_views_and_training_sees_one(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))  # random weights predict 1/4 everywhere
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True)
    network = mdl.network_of(model)
    x = batch(3)
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    expected = np.mean([network(v).numpy() for v in views], axis=0)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mdl.with_flips(network)(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert mdl.is_flipping(model) and not mdl.is_flipping(mdl.build(alpha=0.35, image_size=SIZE, weights=None))
    # the network that training fits predicts one view: not the mean (the views do differ)
    assert np.abs(network(x).numpy() - expected).max() > 1e-4
    assert mdl.features_of(model)(x).shape == (3, mdl.base_of(model).output_shape[-1])


@pytest.mark.real_data
def test_flips_make_a_model_blind_to_mirroring(weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True)
    x = batch(2, seed=1)
    for view in (x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]):
        np.testing.assert_allclose(model(np.ascontiguousarray(view)).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# --- save and load -----------------------------------------------------------------------------

@pytest.mark.real_data
def test_a_model_with_flips_loads_back_with_them(weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=SIZE, flips=True)
    loaded, _ = model_file.load(model_file.save(model, tmp_path / "f.keras", info_for(model)))
    assert mdl.is_flipping(loaded)
    np.testing.assert_allclose(loaded(batch()).numpy(), model(batch()).numpy(), rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip_with_metadata(small_model, tmp_path):
    path = model_file.save(small_model, tmp_path / "m.keras", info_for(small_model, metrics={"test": 0.5}))
    loaded, info = model_file.load(path)
    np.testing.assert_allclose(loaded(batch()).numpy(), small_model(batch()).numpy(), rtol=1e-5)
    assert info.image_size == SIZE and info.metrics == {"test": 0.5} and info.created
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["class_names"] == list(CLASS_NAMES) and sidecar["alpha"] == 0.35
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]


def test_interrupted_save_keeps_the_previous_model(small_model, tmp_path, monkeypatch):
    path = model_file.save(small_model, tmp_path / "m.keras", info_for(small_model, metrics={"v": 1}))
    good = path.read_bytes()

    def crash(self, filepath, *a, **k):
        open(filepath, "wb").write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        model_file.save(small_model, path, info_for(small_model, metrics={"v": 2}))
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]
    assert model_file.load(path)[1].metrics == {"v": 1}


def test_missing_model_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelFileError, match="no model file there.*python -m hematolib train"):
        model_file.load(tmp_path / "nothing.keras")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "cat.keras").write_bytes(b"\xff\xd8\xff\xe0 a jpeg, renamed")
    with pytest.raises(ModelFileError, match="not a Keras .keras model file"):
        model_file.load(tmp_path / "cat.keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ModelFileError, match="zip file but not a Keras model"):
        model_file.load(tmp_path / "other.keras")


def test_plain_keras_model_without_metadata_is_refused(small_model, tmp_path):
    small_model.save(tmp_path / "plain.keras")
    with pytest.raises(ModelFileError, match="without HematoVision metadata"):
        model_file.load(tmp_path / "plain.keras")


def _rewrite_metadata(path, **changes):
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(entries[model_file.METADATA_ENTRY])
    meta.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del meta[k]
    entries[model_file.METADATA_ENTRY] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)


def test_model_for_other_classes_is_refused(small_model, tmp_path):
    path = model_file.save(small_model, tmp_path / "m.keras", info_for(small_model))
    _rewrite_metadata(path, class_names=["CAT", "DOG", "FOX", "OWL"])
    with pytest.raises(ModelFileError, match=r"predicts \['CAT', 'DOG', 'FOX', 'OWL'\], not the expected"):
        model_file.load(path)


def test_metadata_that_disagrees_with_the_model_is_refused(small_model, tmp_path):
    path = model_file.save(small_model, tmp_path / "m.keras", info_for(small_model))
    _rewrite_metadata(path, input_size=[224, 224])
    with pytest.raises(ModelFileError, match=r"inputs of shape \(64, 64, 3\).*metadata says 224x224x3"):
        model_file.load(path)
    _rewrite_metadata(path, image_size=None)
    with pytest.raises(ModelFileError, match="metadata lacks image_size"):
        model_file.load(path)


def test_lambda_layer_is_refused_by_safe_mode_unless_trusted(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    path = model_file.save(model, tmp_path / "lambda.keras", info_for(model))
    with pytest.raises(ModelFileError, match="Lambda layer.*safe_mode=False only if you trust"):
        model_file.load(path)
    loaded, _ = model_file.load(path, safe_mode=False)
    assert loaded(batch()).shape == (2, 4)


# --- the kit's layers and its model format ------------------------------------------------------

def test_the_kits_layers_are_importable_and_registered_with_keras():
    import keras

    from hematolib import layers

    for cls in (layers.CellCrop, layers.FlipStack, layers.FlipMean):
        assert keras.saving.get_registered_object(f"hematolib>{cls.__name__}") is cls
    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None, crop=True, flips=True)
    assert [type(l) for l in model.layers[1:3]] == [layers.CellCrop, layers.FlipStack]
    assert mdl.is_cropping(model) and mdl.is_flipping(model) and not mdl.is_cropping(mdl.network_of(model))
    assert mdl.parts_of(model).base is mdl.base_of(mdl.network_of(model))


def test_a_model_saved_by_an_earlier_kit_is_refused_with_what_to_do(small_model, tmp_path):
    info = info_for(small_model)
    info.format_version = 1
    path = model_file.save(small_model, tmp_path / "old.keras", info)
    with pytest.raises(ModelFileError, match=r"earlier version of the kit \(model format 1.*Train it again"):
        model_file.load(path)


def test_grad_cam_is_not_flat_where_the_model_is_certain():
    """On the class score before softmax; the softmax probability's gradient vanishes when certain."""
    import tensorflow as tf

    from hematolib.explain import grad_cam

    model = mdl.build(alpha=0.35, image_size=SIZE, weights=None)
    dense = mdl.head_of(model).layers[-1]
    kernel = np.random.default_rng(0).normal(size=dense.kernel.shape).astype("float32")
    dense.set_weights([kernel, np.array([300.0, 0, 0, 0], "float32")])  # class 0 at probability 1.0
    x = batch(1)
    assert model(x).numpy()[0, 0] > 0.99
    _, cam = grad_cam(model, x[0])
    assert cam.max() == pytest.approx(1.0) and cam.std() > 0.05
    parts = mdl.parts_of(model)  # the same map from the probability: nothing left to see
    with tf.GradientTape() as tape:
        conv = parts.base(parts.preprocess(x), training=False)
        tape.watch(conv)
        p = parts.head(parts.pool(conv))[:, 0]
    assert np.abs(tape.gradient(p, conv).numpy()).max() == 0
