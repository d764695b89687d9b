"""One bare Django + DRF endpoint: insert the same case row Handoff's create inserts, and send
one Celery message after commit. No authentication, idempotency, audit or outbox: the cost
of the framework, one INSERT and one publish, for the ingest benchmark to stand beside."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from django.db import transaction
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from escalation import sla
from escalation.models import Escalation
from escalation.models.cases import PRIORITY_RANK
from escalation.tasks import run_outbox_item

AGENT_ID = int(os.environ.get("BENCH_BASELINE_AGENT_ID", "0"))
QUEUE_ID = int(os.environ.get("BENCH_BASELINE_QUEUE_ID", "0"))


def bare_case(body: dict, agent_id: int, queue_id: int) -> Escalation:
    """The row a create inserts (also the raw psycopg floor's row, in bench/run.py)."""
    now = timezone.now()
    priority = body.get("priority", "normal")
    due = sla.due_times(now, priority, sla.DEFAULT_POLICY)
    return Escalation(
        id=uuid.uuid4(),
        agent_id=agent_id,
        queue_id=queue_id,
        summary=body["summary"],
        confidence=body["confidence"],
        priority=priority,
        priority_rank=PRIORITY_RANK[priority],
        reason=body.get("reason", ""),
        context=body["context"],
        proposed_action=body.get("proposed_action"),
        external_id=body.get("external_id", ""),
        metadata=body.get("metadata", {}),
        created_at=now,
        updated_at=now,
        entered_queue_at=now,
        claim_due_at=due.claim_due_at,
        resolve_due_at=due.resolve_due_at,
        claim_risk_at=due.claim_risk_at,
        resolve_risk_at=due.resolve_risk_at,
        next_due_at=due.claim_due_at,
        next_risk_at=due.claim_risk_at,
        expires_at=now + timedelta(days=7),
    )


class CreateCase(APIView):
    def post(self, request):
        case = bare_case(request.data, AGENT_ID, QUEUE_ID)
        with transaction.atomic():
            case.save(force_insert=True)
            transaction.on_commit(
                lambda: run_outbox_item.apply_async(args=[0], retry=False, ignore_result=True)
            )
        return Response({"id": str(case.id), "status": case.status}, status=201)


urlpatterns = [path("api/v1/escalations", CreateCase.as_view())]
