"""What the operator commands share (a leading underscore: Django lists no command here).

The spec promises that every command "exits non-zero with a one-line reason on bad arguments".
A CommandError already prints as one line; argparse, however, prints its whole usage block
before the error, so OperatorCommand makes argparse's own errors (a missing or unknown option)
one line too. It lives in accounts, the lower layer, so both apps' commands can import it.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NoReturn

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from accounts.models import Team


def _one_line_parser_error(parser: CommandParser, message: str) -> NoReturn:
    if parser.called_from_command_line:
        parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")
    raise CommandError(f"Error: {message}")


class OperatorCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.error = partial(_one_line_parser_error, parser)  # type: ignore[method-assign]
        return parser


def one_line(exc: ValidationError) -> str:
    """A model's ValidationError as one line: 'field: message; other: message'."""
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def team_for(slug: str) -> Team:
    """The team with this slug, created (named slug.title()) if missing."""
    try:
        validate_slug(slug)
    except ValidationError:
        raise CommandError(
            f"team {slug!r} is not a slug (letters, digits, hyphens, underscores)"
        ) from None
    team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    return team
