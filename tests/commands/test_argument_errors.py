"""From the command line, every bad argument ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest
from django.core.management import load_command_class

COMMANDS = {
    "create_user": "accounts",
    "create_queue": "escalation",
    "create_agent": "escalation",
    "create_agent_key": "escalation",
    "revoke_agent_key": "escalation",
    "verify_audit_chain": "escalation",
    "redact_case": "escalation",
    "seed_demo": "escalation",
}


def _run_from_argv(name: str, *argv: str) -> int:
    command = load_command_class(COMMANDS[name], name)
    with pytest.raises(SystemExit) as exit_info:
        command.run_from_argv(["manage.py", name, *argv])
    return exit_info.value.code


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_bad_option_is_one_line_and_exits_non_zero(name, capsys):
    code = _run_from_argv(name, "--no-such-option")

    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1
    assert err.startswith(f"manage.py {name}: error: ")


def test_an_unknown_option_is_named(capsys):
    _run_from_argv("seed_demo", "--no-such-option")

    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_a_missing_required_option_is_named(capsys):
    code = _run_from_argv("create_agent_key")

    err = capsys.readouterr().err
    assert code != 0
    assert (
        err == "manage.py create_agent_key: error: the following arguments are required: "
        "--agent (see --help)\n"
    )


def test_a_command_error_is_one_line_and_exits_1(capsys):
    code = _run_from_argv("redact_case", "--id", "42", "--reason", "GDPR")

    assert code == 1
    assert capsys.readouterr().err == "CommandError: --id '42' is not a case id (a UUID)\n"
