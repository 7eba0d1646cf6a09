"""Mail goes out through a task: the web request only queues it."""

from django.core.mail import send_mail

from django_jobs.tasks import task


@task(queue="mail", retry_count=3, retry_timeout=10, retry_backoff=2)
def send_welcome_mail(address: str, name: str) -> None:
    """A durable background job, retried three times (10 s, 20 s, 40 s) if sending fails."""
    send_mail(
        "Welcome to the shop",
        f"Hello {name}, thanks for signing up.",
        "shop@example.com",
        [address],
    )
