"""The jobs dashboard in the Django admin (``Django_Jobs > Job brokers``): every server
of ``GEARMAN_CLIENT_SERVERS`` with its version and ping, functions, workers, schedules
and failed jobs, flow rules, refreshing itself. Staff may look; retrying or dropping a
failed job, pausing or resuming a function take the ``django_jobs.control_broker``
permission and a POST with its CSRF token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from broker.errors import BrokerError
from django_jobs.conf import job_settings
from django_jobs.models import Broker
from django_jobs.monitoring.panels import change_failed, history, pause, server_panel

CONTROL_PERMISSION = "django_jobs.control_broker"
# Seconds between two reloads of the dashboard page.
REFRESH_SECONDS = 10
FAILED_ACTIONS = ("retry", "drop")
FLOW_ACTIONS = ("pause", "resume")
HISTORY_STATUSES = ("queued", "running", "successful", "failed", "cancelled")


def may_control(request: HttpRequest) -> bool:
    user: Any = request.user
    return bool(user.has_perm(CONTROL_PERMISSION))


if TYPE_CHECKING:  # generic in django-stubs only, not at run time
    ModelAdmin = admin.ModelAdmin[Broker]
else:
    ModelAdmin = admin.ModelAdmin


@admin.register(Broker)
class BrokerAdmin(ModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user: Any = request.user  # any user model: is_staff and has_perm are the admin's
        return bool(user.is_active and user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        """Staff who may look see the app on the admin index, with or without any of its
        permissions (Django's default would hide it from them)."""
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard), name="django_jobs_broker_changelist"),
            path("failed/", view(require_POST(self.failed)), name="django_jobs_broker_failed"),
            path("history/", view(self.history), name="django_jobs_broker_history"),
            path("flow/", view(require_POST(self.flow)), name="django_jobs_broker_flow"),
        ]

    def dashboard(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        settings = job_settings()
        context = {
            **self.admin_site.each_context(request),
            "title": "Jobs",
            "opts": self.model._meta,
            "panels": [server_panel(host, settings.tls) for host in settings.client_servers],
            "can_control": may_control(request),
            "refresh_seconds": REFRESH_SECONDS,
        }
        return TemplateResponse(request, "admin/django_jobs/dashboard.html", context)

    def history(self, request: HttpRequest) -> HttpResponse:
        """Recent background jobs of every broker, from the results they keep, filtered by
        function and status."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        settings = job_settings()
        function = request.GET.get("function") or None
        status = request.GET.get("status") or None
        rows, errors = history(list(settings.client_servers), settings.tls, function, status)
        context = {
            **self.admin_site.each_context(request),
            "title": "Job history",
            "opts": self.model._meta,
            "rows": rows,
            "errors": errors,
            "function": function or "",
            "status": status or "",
            "statuses": HISTORY_STATUSES,
        }
        return TemplateResponse(request, "admin/django_jobs/history.html", context)

    def flow(self, request: HttpRequest) -> HttpResponse:
        """Pause or resume a function (or a pattern's functions) on one broker."""
        if not may_control(request):
            raise PermissionDenied
        settings = job_settings()
        server, pattern = request.POST.get("server", ""), request.POST.get("pattern", "")
        action = request.POST.get("action", "")
        if server not in settings.client_servers or action not in FLOW_ACTIONS or not pattern:
            return HttpResponseBadRequest("server, pattern and action (pause or resume) are needed")
        try:
            pause(server, settings.tls, action, pattern)
        except (BrokerError, OSError) as exc:
            messages.error(request, f"{action} {pattern} on {server}: {exc}")
        else:
            messages.success(request, f"{pattern} on {server}: {action}d")
        return redirect("admin:django_jobs_broker_changelist")

    def failed(self, request: HttpRequest) -> HttpResponse:
        if not may_control(request):
            raise PermissionDenied
        settings = job_settings()
        server, handle = request.POST.get("server", ""), request.POST.get("handle", "")
        action = request.POST.get("action", "")
        if server not in settings.client_servers or action not in FAILED_ACTIONS or not handle:
            return HttpResponseBadRequest("server, handle and action (retry or drop) are needed")
        try:
            changed = change_failed(server, settings.tls, action, handle)
        except (BrokerError, OSError) as exc:
            messages.error(request, f"{action} {handle} on {server}: {exc}")
        else:
            done = "queued again" if action == "retry" else "dropped"
            messages.success(request, f"{handle} on {server}: {changed} job {done}")
        return redirect("admin:django_jobs_broker_changelist")
