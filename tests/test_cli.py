"""The command line as a user runs it: `python -m hematolib ...` in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from hematolib.config import CLASS_NAMES

pytestmark = pytest.mark.model  # each test starts the kit in a process of its own


def run(*args, env=None, check=True):
    result = subprocess.run([sys.executable, "-m", "hematolib", *map(str, args)], capture_output=True,
                            text=True, env={**os.environ, **(env or {})}, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_explore_prints_counts_and_writes_plots(synthetic_root, tmp_path):
    out = run("explore", "--data", synthetic_root, "--out", tmp_path).stdout
    assert "TRAIN       MONOCYTE          24          6" in out
    assert (tmp_path / "class_counts.png").stat().st_size > 5000 and (tmp_path / "samples.png").exists()


def test_bad_data_path_is_one_clear_line(tmp_path):
    result = run("explore", "--data", tmp_path / "nope", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_uses_every_cell_unless_told_to_hold_some_out_and_can_turn_flips_off(monkeypatch):
    from hematolib import cli, recipe

    class Stop(Exception):
        pass

    seen = []

    def fake_run(ds, config, **kwargs):  # records the recipe's config instead of training
        seen.append(config)
        raise Stop

    monkeypatch.setattr(recipe, "run", fake_run)
    monkeypatch.setattr(cli, "_dataset", lambda args: None)
    for argv in (["train"], ["train", "--no-flips"], ["train", "--holdout"]):
        with pytest.raises(Stop):
            cli.cmd_train(cli.build_parser().parse_args(argv))
    assert [c.flips for c in seen] == [True, False, True]
    assert [c.val_fraction for c in seen] == [0.0, 0.0, 0.2]


def test_train_on_both_labs_adds_the_second_labs_cells_or_says_how_to_get_them(monkeypatch, tmp_path, capsys):
    from hematolib import cli, recipe
    from hematolib.pbc import SPLIT

    seen, outs = [], []
    sizes, jitter = [], []
    monkeypatch.setattr(recipe, "run", lambda ds, config, **kwargs: seen.append(kwargs["second_lab"])
                        or outs.append(kwargs["out"]) or sizes.append(config.image_size)
                        or jitter.append(config.channel_jitter) or 1 / 0)
    monkeypatch.setattr(cli, "_dataset", lambda args: None)
    monkeypatch.setenv("HEMATO_MODELS", str(tmp_path / "models"))
    pbc = tmp_path / "pbc"
    for name in CLASS_NAMES:
        (pbc / name).mkdir(parents=True)
        Image.new("RGB", (36, 36), (200, 100, 150)).save(pbc / name / f"{name[:2]}_1.jpg")
    monkeypatch.setenv("HEMATO_PBC", str(pbc))
    for argv in (["train", "--labs", "both"], ["train"], ["train", "--labs", "kaggle"]):
        with pytest.raises(ZeroDivisionError):
            cli.cmd_train(cli.build_parser().parse_args(argv))
    assert [r.class_name for r in seen[0]] == list(CLASS_NAMES) and {r.split for r in seen[0]} == {SPLIT}
    assert seen[1] == seen[0] and seen[2] is None  # by default both labs when the second is there
    # each saved under its own name, so that the widget and predict can prefer the two-lab model
    assert [o.name for o in outs] == ["hematovision_two_labs.keras"] * 2 + ["hematovision.keras"]
    assert sizes == [160, 160, 128]  # both labs from the start at the larger input, the Kaggle lab at its own
    assert jitter == [False, False, True]  # a model of one lab has its colour channels jittered in training
    with pytest.raises(ZeroDivisionError):
        cli.cmd_train(cli.build_parser().parse_args(["train", "--labs", "both", "--image-size", "96"]))
    assert sizes.pop() == 96 and outs.pop().name == "hematovision_two_labs.keras" and seen.pop() == seen[0]
    with pytest.raises(ZeroDivisionError):
        cli.cmd_train(cli.build_parser().parse_args(["train", "--out", str(tmp_path / "mine.keras")]))
    assert outs.pop() == tmp_path / "mine.keras"
    seen.pop()
    monkeypatch.delenv("HEMATO_PBC")
    monkeypatch.setattr("hematolib.pbc.default_target", lambda: tmp_path / "nowhere")
    with pytest.raises(ZeroDivisionError):
        cli.cmd_train(cli.build_parser().parse_args(["train"]))
    assert seen[3] is None and "training on the Kaggle lab alone" in capsys.readouterr().out and jitter[-1]
    monkeypatch.setenv("HEMATO_PBC", str(tmp_path / "nowhere"))
    assert cli.main(["train", "--labs", "both"]) == 2


def test_predict_with_missing_model_explains(tmp_path, synthetic_root):
    image = next((synthetic_root / "dataset2-master/images/TEST/MONOCYTE").iterdir())
    result = run("predict", image, "--model", tmp_path / "none.keras", check=False)
    assert result.returncode == 2 and "no model file there" in result.stderr


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_use_the_two_lab_model_when_there_is_one(command, tmp_path, monkeypatch, capsys):
    from hematolib import cli

    monkeypatch.setenv("HEMATO_MODELS", str(tmp_path))
    argv = [command, str(tmp_path / "cell.png")] if command == "predict" else [command]
    assert cli.main(argv) == 2 and f"{tmp_path / 'hematovision.keras'}: no model file there" in capsys.readouterr().err
    (tmp_path / "hematovision_two_labs.keras").write_text("not a model")
    assert cli.main(argv) == 2 and str(tmp_path / "hematovision_two_labs.keras") in capsys.readouterr().err


def test_train_on_real_data_then_predict_and_evaluate(real_root, weights_dir, tmp_path):
    model = tmp_path / "quick.keras"
    env = {"HEMATO_DATA": str(real_root), "HEMATO_WEIGHTS_DIR": str(weights_dir)}
    out = run("train", "--per-class", 24, "--epochs", 4, "--fine-tune-epochs", 0, "--image-size", 96, "--out", model,
              "--verbose", 0, env=env).stdout
    assert "TEST: accuracy" in out and f"Model saved to {model}" in out
    config = json.loads(model.with_suffix(".json").read_text())["config"]
    assert config["flips"] is True and config["val_fraction"] == 0.0  # the defaults: four views, every cell
    test_dir = real_root / "dataset2-master" / "images" / "TEST"
    images = [sorted((test_dir / c).iterdir())[0] for c in CLASS_NAMES]
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    result = run("predict", *images, junk, "--model", model, "--json", env=env, check=False)
    assert result.returncode == 1  # one bad file: reported, the others still classified
    rows = json.loads(result.stdout)
    assert [r["image"] for r in rows[:4]] == [str(p) for p in images]
    for row in rows[:4]:
        assert row["class"] in CLASS_NAMES
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert "not an image file" in rows[4]["error"]
    empty = tmp_path / "no-white-cell.png"
    Image.new("RGB", (320, 240), (222, 150, 162)).save(empty)  # pink red-cell colour, no nucleus stain
    printed = run("predict", empty, "--model", model, env=env).stdout.splitlines()
    assert printed[0].startswith(f"{empty}: ") and len(printed) == 2
    assert printed[1] == f"  note: {empty.name}: hardly any purple nucleus stain (0 pixels in 320x240), so the " \
        "white cell is probably cut off, missing or too small to see, and the label is a guess."
    report = json.loads(run("evaluate", "--model", model, "--per-class", 10, "--json", env=env).stdout)
    # TEST_SIMPLE: 71 images of 68 cells (two photographs twice over, one pair of them one scene)
    assert report["TEST"]["n_images"] == 40 and report["TEST_SIMPLE"]["n_originals"] == 68


def test_predict_and_evaluate_credit_the_data_a_model_was_trained_on(tmp_path, synthetic_root, capsys):
    """PBC is CC BY 4.0: wherever a model trained on it answers, its credit is shown."""
    from hematolib import cli, model_file
    from hematolib import model as mdl
    from hematolib.pbc import CREDIT

    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    for name, credits in (("two.keras", [CREDIT]), ("one.keras", [])):
        info = model_file.ModelInfo(class_names=list(CLASS_NAMES), image_size=64, alpha=0.35, credits=credits)
        model_file.save(model, tmp_path / name, info)
    image = next((synthetic_root / "dataset2-master/images/TEST/MONOCYTE").iterdir())
    assert cli.main(["predict", str(image), "--model", str(tmp_path / "two.keras")]) == 0
    printed = capsys.readouterr()
    assert f"credit: {CREDIT}" in printed.err and printed.out.startswith(f"{image}: ")
    assert cli.main(["predict", str(image), "--model", str(tmp_path / "one.keras")]) == 0
    assert "credit:" not in capsys.readouterr().err
    argv = ["evaluate", "--model", str(tmp_path / "two.keras"), "--data", str(synthetic_root), "--per-class", "2"]
    assert cli.main(argv) == 0
    assert f"Trained on: {CREDIT}" in capsys.readouterr().out
