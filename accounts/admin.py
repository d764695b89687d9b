from django.contrib import admin

from accounts.models import Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active"]
    inlines = [MembershipInline]

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: audit rows point at teams' queues
