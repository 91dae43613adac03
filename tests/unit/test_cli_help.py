"""`cin --version`, and a one-line description for every command and option."""

from __future__ import annotations

import argparse
from importlib import metadata

import pytest

from cin.cli import _parser, main


def _undescribed(parser: argparse.ArgumentParser, name: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for command, sub in action.choices.items():
                if not helps.get(command):
                    missing.append(f"{name} {command}")
                missing += _undescribed(sub, f"{name} {command}")
        elif not action.help or "\n" in action.help:
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_command_and_option_has_a_one_line_description() -> None:
    assert _undescribed(_parser(), "cin") == []


@pytest.mark.parametrize("command", ["coordinator", "edge", "dev", "storage-check"])
def test_help_of_the_service_commands(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "-c CONFIG, --config CONFIG" in out
    assert "config file" in out


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"cin {metadata.version('cin')}\n"
