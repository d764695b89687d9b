"""Escalation.first_claimed_at: the first claim of a case, kept through release, lease expiry
and transfer (time to claim on the SLA dashboard). Existing cases are backfilled from the
earliest `escalation.claimed` audit event of each case: one UPDATE with a correlated
MIN(created_at) subquery (served by the audit_case_idx index)."""

from django.db import migrations, models
from django.db.models import Exists, Min, OuterRef, Subquery


def backfill(apps, schema_editor):
    Escalation = apps.get_model("escalation", "Escalation")
    AuditEvent = apps.get_model("escalation", "AuditEvent")
    claims = AuditEvent.objects.filter(escalation=OuterRef("pk"), verb="escalation.claimed")
    first_claim = (
        claims.order_by().values("escalation").annotate(first=Min("created_at")).values("first")
    )
    # Every case ever claimed: resolved ones, claimed ones, and open ones released since.
    Escalation.objects.filter(first_claimed_at__isnull=True).filter(Exists(claims)).update(
        first_claimed_at=Subquery(first_claim[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("escalation", "0008_audit_verification"),
    ]

    operations = [
        migrations.AddField(
            model_name="escalation",
            name="first_claimed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
