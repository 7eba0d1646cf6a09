"""The jobs dashboard in the Django admin (``Django_Jobs > Job brokers``): every server
of ``GEARMAN_CLIENT_SERVERS`` with its version and ping, functions, workers, schedules
and failed jobs, flow rules, refreshing itself. Staff may look; retrying or dropping a
failed job, pausing or resuming a function, cancelling a job take the
``django_jobs.control_broker``
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
from django_jobs.monitoring.panels import (
    Control,
    cancel_job,
    change_failed,
    history,
    pause,
    server_panel,
)

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
            path("cancel/", view(require_POST(self.cancel)), name="django_jobs_broker_cancel"),
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

    def failed(self, request: HttpRequest) -> HttpResponse:
        return self._control(request, "handle", FAILED_ACTIONS, change_failed)

    def flow(self, request: HttpRequest) -> HttpResponse:
        return self._control(request, "pattern", FLOW_ACTIONS, pause)

    def cancel(self, request: HttpRequest) -> HttpResponse:
        return self._control(request, "handle", ("cancel",), cancel_job)

    def _control(
        self, request: HttpRequest, target: str, actions: tuple[str, ...], act: Control
    ) -> HttpResponse:
        """What a dashboard form POSTs: the permission, the server and the action checked,
        ``act`` run on that broker, what happened said in a message, back to the page."""
        if not may_control(request):
            raise PermissionDenied
        settings = job_settings()
        server, name = request.POST.get("server", ""), request.POST.get(target, "").strip()
        action = request.POST.get("action", "")
        if server not in settings.client_servers or action not in actions or not name:
            wanted = " or ".join(actions)
            return HttpResponseBadRequest(f"server, {target} and action ({wanted}) are needed")
        try:
            done = act(server, settings.tls, action, name)
        except (BrokerError, OSError) as exc:
            messages.error(request, f"{action} {name} on {server}: {exc}")
        else:
            messages.success(request, f"{name} on {server}: {done}")
        return redirect("admin:django_jobs_broker_changelist")
