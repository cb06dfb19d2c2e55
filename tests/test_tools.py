"""tools/match_originals.py: the table that says which photograph each image shows."""

from __future__ import annotations

import numpy as np
import pytest

from hematolib.data import known_originals
from tests.helpers import load_script

match = load_script("tools/match_originals.py")


def test_a_photograph_rich_in_keypoints_cannot_collect_other_cells_images():
    # photograph 0 matches everything a little better than it should; each was drawn twice
    scores = np.array([[30, 12, 0], [31, 12, 0], [14, 12, 0], [13, 0, 11], [12, 0, 10], [9, 20, 0]])
    assert match.assign(scores, balanced=False).tolist() == [0, 0, 0, 0, 0, 1]
    assert match.assign(scores, balanced=True).tolist() == [0, 0, 1, 2, 2, 1]


@pytest.mark.real_data
def test_the_authors_split_of_the_photographs_is_rebuilt(real_root):
    pools = match.original_split(real_root)
    sizes = {key: len(names) for key, names in pools.items()}
    # TRAIN neutrophils: 159 photographs, one of them (BloodImage_00280) not in Kaggle's originals
    assert sizes == {("TRAIN", "EOSINOPHIL"): 75, ("TRAIN", "LYMPHOCYTE"): 27, ("TRAIN", "MONOCYTE"): 16,
                     ("TRAIN", "NEUTROPHIL"): 158, ("TEST", "EOSINOPHIL"): 13, ("TEST", "LYMPHOCYTE"): 6,
                     ("TEST", "MONOCYTE"): 4, ("TEST", "NEUTROPHIL"): 48}
    # and it agrees with the shipped table: TEST images come from the TEST photographs of their class
    table = known_originals()
    for (split, class_name), names in pools.items():
        used = {cell for path, (_, cell) in table.items() if path.startswith(f"{split}/{class_name}/")}
        assert len(used - set(names)) <= 2, (split, class_name)  # at most the merged same-scene names

