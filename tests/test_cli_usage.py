"""`python -m hematolib <command> --help` as a user types it: every command's usage prints."""

from __future__ import annotations

import argparse

import pytest

from hematolib.cli import build_parser


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_the_parser_lists_the_commands_the_readme_names():
    assert {"train", "evaluate", "predict", "download", "course", "grade"} <= set(commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and command in out.splitlines()[0]


def test_help_names_the_model_folder_even_with_a_percent_sign_in_it(tmp_path, monkeypatch, capsys):
    models = tmp_path / "100% mine"
    monkeypatch.setenv("HEMATO_MODELS", str(models))
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no path broken by the wrapping
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert f"else {models / 'hematovision.keras'})" in capsys.readouterr().out
