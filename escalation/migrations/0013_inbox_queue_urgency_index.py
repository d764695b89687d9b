from django.db import migrations, models


class Migration(migrations.Migration):
    """The inbox pages each visible queue on its own urgency index; the (queue, next_due_at)
    index it extends goes (the new one's prefix serves the breached counts)."""

    dependencies = [
        ("escalation", "0012_learning_loop"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="escalation",
            index=models.Index(
                condition=models.Q(("status__in", ["open", "claimed"])),
                fields=["queue", "next_due_at", "priority_rank", "created_at", "id"],
                name="case_queue_urgency_idx",
            ),
        ),
        migrations.RemoveIndex(
            model_name="escalation",
            name="case_queue_due_idx",
        ),
    ]
