"""Django admin: the configuration surface (queues, calendars, agents and their keys). Cases and
audit events are read-only here; every case change goes through escalation.transitions."""

from __future__ import annotations

from django.contrib import admin, messages

from escalation import delivery, keys
from escalation.audit import Actor
from escalation.models import (
    Agent,
    AgentKey,
    AuditEvent,
    BusinessCalendar,
    Delivery,
    Escalation,
    Queue,
)


class NoDeleteAdmin(admin.ModelAdmin):
    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: audit rows point here


class ReadOnlyAdmin(NoDeleteAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ActionOnlyAdmin(ReadOnlyAdmin):
    """A read-only list whose actions call a domain function per selected row."""

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list (and its actions) without an edit form

    def run_each(self, request, rows, act, error_class, done: str) -> None:
        for row in rows:
            try:
                act(row, Actor.for_user(request.user))
            except error_class as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, done.format(row=row), messages.SUCCESS)


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ["name", "timezone"]


@admin.register(Queue)
class QueueAdmin(NoDeleteAdmin):
    # Queue.clean() validates the SLA policy, label schema and routing rules on save.
    list_display = ["slug", "name", "team", "lease_seconds", "expire_after_seconds", "is_active"]
    list_filter = ["team", "is_active"]


class AgentKeyInline(admin.TabularInline):
    model = AgentKey
    fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are issued by the "Create an API key" action, shown once


@admin.register(Agent)
class AgentAdmin(NoDeleteAdmin):
    list_display = ["name", "callback_url", "all_queues", "is_active", "created_at"]
    filter_horizontal = ["queues"]
    exclude = ["webhook_secret", "previous_webhook_secret", "previous_secret_expires_at"]
    inlines = [AgentKeyInline]
    actions = ["create_api_key"]

    @admin.action(description="Create an API key (shown once)")
    def create_api_key(self, request, queryset):
        for agent in queryset:
            try:
                _, raw = keys.issue_key(agent=agent, actor=Actor.for_user(request.user))
            except keys.AgentKeyError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                f"New key for {agent.name} (copy it now, it is not shown again): {raw}",
                messages.WARNING,
            )


@admin.register(AgentKey)
class AgentKeyAdmin(ActionOnlyAdmin):
    list_display = ["prefix", "agent", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["agent"]
    fields = ["prefix", "agent", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda key, actor: keys.revoke_key(prefix=key.prefix, actor=actor),
            keys.AgentKeyError,
            "Revoked {row.prefix}",
        )


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ["id", "summary", "queue", "agent", "status", "priority", "created_at"]
    list_filter = ["status", "priority", "queue"]
    search_fields = ["summary", "external_id"]
    exclude = ["context", "metadata"]  # personal data stays on the case page, behind login


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "verb", "actor_name", "escalation"]
    list_filter = ["verb", "actor_kind"]


@admin.register(Delivery)
class DeliveryAdmin(ActionOnlyAdmin):
    list_display = [
        "id",
        "event_type",
        "agent",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "dead_at",
    ]
    list_filter = ["status", "event_type", "agent"]
    exclude = ["body"]
    actions = ["redeliver"]

    @admin.action(description="Deliver again (same webhook-id)")
    def redeliver(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda row, actor: delivery.redeliver(delivery_id=row.pk, actor=actor),
            delivery.RedeliveryError,
            "Delivery {row.pk} queued again",
        )
