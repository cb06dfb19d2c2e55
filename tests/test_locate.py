"""Finding the white cell and cropping around it, and models that do it themselves."""

from __future__ import annotations

import numpy as np
import pytest

from hematolib import model as mdl, model_file
from hematolib.data import load_dataset
from hematolib.locate import crop_cell, little_stain, locate_cell, stain_map, stained_area

from tests.helpers import NUCLEUS, smear_with_nucleus


pytestmark = pytest.mark.model

@pytest.mark.parametrize("cy, cx", [(120, 160), (60, 250), (200, 30)])
def test_the_nucleus_is_found_wherever_it_is(cy, cx):
    y, x, side = (int(v) for v in locate_cell(smear_with_nucleus(cy, cx)))
    assert abs(y - cy) <= 2 and abs(x - cx) <= 2
    assert 0.35 * 240 <= side <= 240


def test_platelets_do_not_beat_the_nucleus():
    img = smear_with_nucleus(150, 220)
    img[20:24, 100:104] = NUCLEUS  # a platelet: small and just as purple
    y, x, _ = (int(v) for v in locate_cell(img))
    assert abs(y - 150) <= 2 and abs(x - 220) <= 2


def test_crop_stays_inside_the_image_and_centres_the_cell_when_it_can():
    crop = np.asarray(crop_cell(smear_with_nucleus(120, 160)))
    side = crop.shape[0]
    assert crop.shape == (side, side, 3)
    centre = crop[side // 2 - 2: side // 2 + 2, side // 2 - 2: side // 2 + 2]
    assert (centre == NUCLEUS).all()
    edge = np.asarray(crop_cell(smear_with_nucleus(230, 5)))
    assert edge.shape[0] == edge.shape[1] <= 240


def test_a_tight_photo_of_one_cell_is_not_cut():
    img = smear_with_nucleus(60, 60, radius=45, size=(120, 120))
    assert int(locate_cell(img)[2]) == 120  # the box grows with the nucleus, up to the whole image


def test_an_image_without_stain_falls_back_to_the_centre():
    y, x, side = (int(v) for v in locate_cell(np.full((100, 160, 3), 200, np.uint8)))
    assert (y, x, side) == (50, 80, 100)


def test_little_stain_means_the_white_cell_is_cut_off_or_missing():
    whole = smear_with_nucleus(120, 160, radius=30)  # about 2,800 stained pixels: a real nucleus's size
    assert stained_area(whole) == int((np.asarray(stain_map(whole)) > 0).sum()) > 2500
    assert not little_stain(whole)
    assert little_stain(smear_with_nucleus(0, 0, radius=30))  # a quarter of it left in the frame
    assert little_stain(np.full((240, 320, 3), 200, np.uint8))  # no stain at all
    # the limit scales with the image: the same nucleus fills a small photo's box
    assert not little_stain(smear_with_nucleus(40, 40, radius=12, size=(80, 80)))


def test_synthetic_white_cells_are_found(synthetic_root):
    for record in load_dataset(synthetic_root).test_simple:  # cells drawn near the centre
        from PIL import Image

        img = np.asarray(Image.open(record.path).convert("RGB"))
        y, x, _ = (int(v) for v in locate_cell(img))
        assert abs(y - img.shape[0] / 2) < 0.2 * img.shape[0] and abs(x - img.shape[1] / 2) < 0.2 * img.shape[1]


def test_cropping_model_takes_whole_smears_and_saves_and_loads_in_safe_mode(tmp_path):
    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    assert mdl.input_size(model) == (240, 320) and mdl.is_cropping(model)
    images = np.stack([smear_with_nucleus(60, 250), smear_with_nucleus(180, 40)]).astype("float32")
    view = np.asarray(mdl.network_view(model, images))
    assert view.shape == (2, 64, 64, 3)
    info = model_file.ModelInfo(class_names=["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"],
                                image_size=64, alpha=0.35, crop=True)
    assert info.input_size == [240, 320] and "crops around" in info.preprocessing
    path = model_file.save(model, tmp_path / "crop.keras", info)
    loaded, loaded_info = model_file.load(path)  # safe mode: CellCrop is a registered layer, not a Lambda
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), rtol=1e-5)
    assert loaded_info.crop


@pytest.mark.real_data
def test_the_cell_is_found_in_real_test_simple_images(real_dataset):
    """A proxy check (the shipped annotations box only red cells): the crop holds most of the
    image's nucleus stain, which on these smears belongs to the one white cell."""
    from PIL import Image

    from hematolib.locate import stain_map

    shares = []
    for record in real_dataset.test_simple:
        img = np.asarray(Image.open(record.path).convert("RGB"))
        y, x, side = (int(v) for v in locate_cell(img))
        stain = np.asarray(stain_map(img))
        top, left = min(max(0, y - side // 2), 240 - side), min(max(0, x - side // 2), 320 - side)
        shares.append(stain[top: top + side, left: left + side].sum() / stain.sum())
    assert np.mean(np.array(shares) > 0.6) >= 0.9, sorted(shares)[:10]


@pytest.mark.real_data
def test_real_images_with_little_stain_are_cells_cut_off_by_the_frame(real_dataset):
    """The figures `little_stain`'s docstring and the README quote: no TEST_SIMPLE photograph is
    flagged, and the TEST images that are belong to a few cells near the frame's edge."""
    from collections import Counter

    from hematolib.images import read_image

    def flagged(records):
        return [r for r in records if little_stain(read_image(r.path)[0])]

    assert flagged(real_dataset.test_simple) == []
    test = flagged(real_dataset.test)
    assert len(test) == 28 and {r.class_name for r in test} == {"EOSINOPHIL", "NEUTROPHIL"}
    assert Counter(r.original for r in test).most_common(3) == [
        ("BloodImage_00093", 16), ("BloodImage_00026", 6), ("BloodImage_00068", 5)]
    train = flagged(real_dataset.train)
    assert len(train) == 25 and "LYMPHOCYTE" not in {r.class_name for r in train}  # the smallest nuclei pass


def test_grad_cam_of_a_cropping_model_explains_the_crop():
    from hematolib.explain import grad_cam, overlay

    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    view, heat = grad_cam(model, smear_with_nucleus(60, 250).astype("float32"))
    assert view.shape == (64, 64, 3) and heat.shape == (64, 64)
    assert (view[28:36, 28:36] == NUCLEUS).all(axis=-1).mean() > 0.5  # the nucleus is in the middle
    assert 0 <= heat.min() and heat.max() <= 1
    assert overlay(view, heat).shape == (64, 64, 3)
