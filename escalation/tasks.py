"""Thin Celery tasks: load by id, call a domain function. Every one is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from escalation import outbox, sweeps


@shared_task(name="escalation.tasks.run_outbox_item", ignore_result=True)
def run_outbox_item(item_id: int) -> str:
    return outbox.perform(item_id)


@shared_task(name="escalation.tasks.redrive_outbox", ignore_result=True)
def redrive_outbox() -> int:
    return sweeps.redrive_outbox()


@shared_task(name="escalation.tasks.forget_idempotency_keys", ignore_result=True)
def forget_idempotency_keys() -> int:
    return sweeps.forget_idempotency_keys()
