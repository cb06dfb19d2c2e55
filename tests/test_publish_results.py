"""tools/publish_results.py: the README's results table and the model card's full table come from
the benchmark's JSON, never by hand. Reads JSON only: no TensorFlow."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
publish = load_script("tools/publish_results.py")
START, END = publish.MARKERS


def between(text: str, markers: tuple[str, str]) -> str:
    return text.split(markers[0])[1].split(markers[1])[0]


def results() -> dict:
    return json.loads(publish.RESULTS.read_text())


def cross_validation() -> dict:
    return json.loads(publish.CROSS_VALIDATION.read_text())


def test_the_readme_table_is_what_the_script_makes_from_the_committed_figures():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1
    assert between(readme, publish.MARKERS).strip() == publish.readme_block().strip(), \
        "README.md's results table differs from the figures: run `python tools/publish_results.py`"
    assert (ROOT / publish.cited(publish.RESULTS)).is_file() and (ROOT / publish.cited(publish.CROSS_VALIDATION)).is_file()


def test_the_table_states_each_figure_with_its_interval():
    table = publish.results_table(results(), cross_validation())
    lines = table.splitlines()
    assert lines[:2] == ["| | kit recipe | TensorFlow-tutorial recipe |", "|---|---|---|"]
    assert all(line.count("|") == 4 for line in lines), "every row has three cells"
    pooled = cross_validation()["pooled"]
    assert f"| {pooled['accuracy']:.1%} ({pooled['ci_low']:.1%}-{pooled['ci_high']:.1%}) | not run |" in table
    test = results()["kit"]["test"]
    assert f"**{test['accuracy']:.1%} ({test['ci_low']:.1%}-{test['ci_high']:.1%})**" in table
    assert "| not run |" in publish.results_table(results()).splitlines()[3]  # no cross-validation given


def test_the_readme_table_follows_the_figures_when_they_change(tmp_path):
    figures = tmp_path / "results.json"
    shutil.copy(publish.RESULTS, figures)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nOLD TABLE\n{END}\nafter\n")
    publish.write_readme_table(readme, figures, publish.CROSS_VALIDATION)
    first = readme.read_text()
    assert "| **TEST accuracy**" in first and "OLD TABLE" not in first

    changed = results()
    changed["kit"]["test"].update(accuracy=0.912, ci_low=0.801, ci_high=0.99)
    changed["tutorial"]["train_seconds"] = 600.0
    figures.write_text(json.dumps(changed))
    publish.write_readme_table(readme, figures, publish.CROSS_VALIDATION)
    second = readme.read_text()
    assert second != first
    assert "**91.2% (80.1%-99.0%)**" in second and "| 10.0 min |" in second
    assert str(figures) in second  # a file outside the project is cited by its full path


def test_a_cross_validation_of_another_recipe_is_refused():
    other = copy.deepcopy(cross_validation())
    other["config"]["image_size"] = 160
    with pytest.raises(ValueError, match=r"another recipe.*image_size \(160 against 128\)"):
        publish.results_table(results(), other)


def test_the_replacement_touches_nothing_outside_the_markers(tmp_path):
    before, after = "# Title\n\nintro with | a table |\n\n", "\n\nthe rest, untouched\n"
    readme = tmp_path / "README.md"
    readme.write_text(f"{before}{START}\nold table\n{END}{after}")
    publish.write_readme_table(readme, publish.RESULTS, publish.CROSS_VALIDATION)
    text = readme.read_text()
    assert text.startswith(before + START + "\n") and text.endswith(END + after)
    assert between(text, publish.MARKERS).strip() == publish.readme_block().strip()
    publish.write_readme_table(readme, publish.RESULTS, publish.CROSS_VALIDATION)
    assert readme.read_text() == text  # the same figures again: the same file
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary file left behind


@pytest.mark.parametrize("text, missing", [("no markers at all\n", START),
                                           (f"only the start\n{START}\n", END),
                                           (f"only the end\n{END}\n", START)])
def test_a_readme_without_its_markers_is_refused_and_left_alone(tmp_path, text, missing):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ValueError) as err:
        publish.write_readme_table(readme, publish.RESULTS, publish.CROSS_VALIDATION)
    assert str(readme) in str(err.value) and missing in str(err.value)
    assert readme.read_text() == text


def test_markers_out_of_order_are_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{END}\nx\n{START}\n")
    with pytest.raises(ValueError, match="once, then"):
        publish.write_readme_table(readme, publish.RESULTS, publish.CROSS_VALIDATION)


def test_the_command_line_writes_both_documents_and_refuses_a_quick_run(tmp_path, capsys):
    readme, card = tmp_path / "README.md", tmp_path / "model-card.md"
    readme.write_text(f"a\n{START}\n{END}\nb\n")
    card.write_text(f"c\n{publish.CARD_MARKERS[0]}\n{publish.CARD_MARKERS[1]}\nd\n")
    assert publish.main(["--readme", str(readme), "--model-card", str(card)]) == 0
    assert between(readme.read_text(), publish.MARKERS).strip() == publish.readme_block().strip()
    assert "| **TEST accuracy**" in card.read_text() and card.read_text().endswith("\nd\n")

    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({**results(), "command": "make benchmark ARGS=--quick"}))
    with pytest.raises(SystemExit):
        publish.main(["--results", str(quick), "--readme", str(readme), "--model-card", str(card)])
    assert "not from a full run" in capsys.readouterr().err

    card.write_text("a model card without markers\n")
    kept = readme.read_text()
    with pytest.raises(SystemExit):  # one document lacks its markers: neither is written
        publish.main(["--readme", str(readme), "--model-card", str(card)])
    assert str(card) in capsys.readouterr().err and readme.read_text() == kept


def test_the_model_card_holds_the_full_table_and_quotes_the_cross_validation():
    card = (ROOT / "docs" / "model-card.md").read_text()
    assert between(card, publish.CARD_MARKERS).strip() == publish.model_card_block().strip(), \
        "docs/model-card.md's table differs from the figures: run `python tools/publish_results.py`"
    result = cross_validation()
    pooled, flat = result["pooled"], " ".join(card.replace("**", "").split())
    assert pooled["n_originals"] == 272 and pooled["n_images"] == 9957  # every TRAIN cell, each once
    assert (f"{pooled['accuracy']:.1%} with the four views (95% CI {pooled['ci_low']:.1%}-{pooled['ci_high']:.1%}"
            f", resampling cells), log loss {pooled['log_loss']:.3f}") in flat
    assert f"{pooled['n_originals'] - len(pooled['cells_missed'])} of {pooled['n_originals']} cells mostly right" in flat
    folds = [f"{f['accuracy']:.1%}" for f in result["folds"]]
    assert ", ".join(folds[:-1]) + f" and {folds[-1]}" in flat


def test_the_readme_stays_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for link in ("docs/model-card.md", "docs/dataset.md", "docs/recipe-search.md", "docs/reliability.md",
                 "docs/glossary.md", "exercises/README.md", "LICENSE", "docs/images/cells.png"):
        assert f"({link})" in readme, link
    for link in ("docs/model-card.md", "docs/dataset.md", "docs/recipe-search.md", "docs/reliability.md",
                 "exercises/README.md", "LICENSE"):
        assert (ROOT / link).is_file(), link
    assert "issue #" not in readme and "2026-" not in readme.replace("results-2026-", "")
