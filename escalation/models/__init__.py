from escalation.models.agents import Agent, AgentKey, IdempotencyRecord
from escalation.models.audit import AuditChainHead, AuditEvent
from escalation.models.cases import (
    ContextUpdate,
    Decision,
    Escalation,
    Priority,
    Resolution,
    Status,
    Transfer,
)
from escalation.models.deliveries import Delivery, DeliveryAttempt, DeliveryStatus
from escalation.models.outbox import OutboxItem, SweepCursor
from escalation.models.queues import BusinessCalendar, Queue

__all__ = [
    "Agent",
    "AgentKey",
    "AuditChainHead",
    "AuditEvent",
    "BusinessCalendar",
    "ContextUpdate",
    "Decision",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "Escalation",
    "IdempotencyRecord",
    "OutboxItem",
    "Priority",
    "Queue",
    "Resolution",
    "Status",
    "SweepCursor",
    "Transfer",
]
