"""Thin Celery tasks: load by id, call a domain function. Every one is safe to run twice.

The sweeps run on their own queue (settings.CELERY_TASK_ROUTES) and worker, so a flood of
other work cannot starve the clocks; their time limits stop a stuck run before the next."""

from __future__ import annotations

from celery import shared_task

from escalation import audit, autonomy, delivery, outbox, rollups, sweeps


@shared_task(name="escalation.tasks.run_outbox_item", ignore_result=True)
def run_outbox_item(item_id: int) -> str:
    return outbox.perform(item_id)


@shared_task(name="escalation.tasks.run_outbox_items", ignore_result=True)
def run_outbox_items(item_ids: list[int]) -> list[str]:
    """The doorbell of a batch: its items, one after another (each as run_outbox_item)."""
    return [outbox.perform(item_id) for item_id in item_ids]


@shared_task(name="escalation.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    return delivery.attempt(delivery_id)


@shared_task(name="escalation.tasks.redrive_outbox", ignore_result=True)
def redrive_outbox() -> int:
    return sweeps.redrive_outbox()


@shared_task(name="escalation.tasks.forget_idempotency_keys", ignore_result=True)
def forget_idempotency_keys() -> int:
    return sweeps.forget_idempotency_keys()


SWEEP_LIMITS = {"soft_time_limit": 50, "time_limit": 60, "ignore_result": True}


@shared_task(name="escalation.tasks.sweep_breaches", **SWEEP_LIMITS)
def sweep_breaches() -> int:
    return sweeps.sweep_breaches()


@shared_task(name="escalation.tasks.sweep_leases", **SWEEP_LIMITS)
def sweep_leases() -> int:
    return sweeps.sweep_leases()


@shared_task(name="escalation.tasks.sweep_expiry", **SWEEP_LIMITS)
def sweep_expiry() -> int:
    return sweeps.sweep_expiry()


@shared_task(name="escalation.tasks.notify_breaches", **SWEEP_LIMITS)
def notify_breaches() -> int:
    return sweeps.notify_breaches()


@shared_task(name="escalation.tasks.log_audit_checkpoint", **SWEEP_LIMITS)
def log_audit_checkpoint() -> int:
    seq, _ = audit.log_checkpoint()
    return seq


@shared_task(name="escalation.tasks.sweep_autonomy", **SWEEP_LIMITS)
def sweep_autonomy() -> int:
    return autonomy.promote_ready()


@shared_task(name="escalation.tasks.refresh_stats", **SWEEP_LIMITS)
def refresh_stats() -> int:
    return rollups.refresh()


@shared_task(name="escalation.tasks.sweep_deliveries", **SWEEP_LIMITS)
def sweep_deliveries() -> int:
    return sweeps.sweep_deliveries()


# The walk reads every event (minutes at millions), so it gets more time than a sweep; a run cut
# short leaves its row unfinished and the page says so.
@shared_task(
    name="escalation.tasks.verify_audit_chain_task",
    ignore_result=True,
    soft_time_limit=1740,
    time_limit=1800,
)
def verify_audit_chain_task(verification_id: int) -> bool | None:
    return audit.run_verification(verification_id)
