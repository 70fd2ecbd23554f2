"""`manage.py createtoken USERNAME [--name N]`: make a bearer token for API clients."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runtime.api.auth import token_create


class Command(BaseCommand):
    """Print a new token once; only its hash is stored."""

    help = "Make a bearer token for USERNAME and print it (it cannot be shown again)."

    def add_arguments(self, parser):
        """USERNAME and an optional --name."""
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, username: str, name: str, **options):
        """Make the token and print it alone on stdout, so scripts can capture it."""
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(
                f"no user {username!r}; create one first (python manage.py createsuperuser)"
            ) from None
        row, raw = token_create(user=user, name=name)
        self.stdout.write(raw)
        self.stderr.write(
            f"token {row.prefix}… for {username}: shown once, store it now; "
            f"send it as `Authorization: Bearer <token>`"
        )
