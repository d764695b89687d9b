from escalation.models.agents import Agent, AgentKey, CapShare, IdempotencyRecord
from escalation.models.audit import AuditChainHead, AuditEvent, AuditVerification
from escalation.models.autonomy import (
    Certificate,
    LabelSource,
    Mode,
    ModeChange,
    PolicyDecision,
    Scope,
)
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
from escalation.models.stats import (
    CalibrationCell,
    CaseDayStat,
    DurationDayStat,
    ResolutionDayStat,
)

__all__ = [
    "Agent",
    "CapShare",
    "AgentKey",
    "AuditChainHead",
    "AuditEvent",
    "AuditVerification",
    "BusinessCalendar",
    "CalibrationCell",
    "Certificate",
    "CaseDayStat",
    "ContextUpdate",
    "Decision",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DurationDayStat",
    "Escalation",
    "IdempotencyRecord",
    "LabelSource",
    "Mode",
    "ModeChange",
    "OutboxItem",
    "PolicyDecision",
    "Priority",
    "Queue",
    "Resolution",
    "ResolutionDayStat",
    "Scope",
    "Status",
    "SweepCursor",
    "Transfer",
]
