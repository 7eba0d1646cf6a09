"""The jobs dashboard in the Django admin, in a real browser: Debian's chromium driven by
selenium (headless), against a real broker, a real worker process and ``manage.py
runserver``. Screenshots go to ``test-output/screenshots/`` ($TEST_OUTPUT_DIR)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.admin import AdminClient
from broker.client import Client, schedule_fields
from broker.gearman.workflows import Group, Step, submit
from django_jobs.client import GearmanClient
from tests.helpers import ROOT, free_port, require_peer, run_broker, wait_for_port, wait_until
from tests.with_django.project import PROJECT, gearman_worker, manage_env

SCREENSHOTS = Path(os.environ.get("TEST_OUTPUT_DIR", ROOT / "test-output")) / "screenshots"
PASSWORD = "a long password for tests"
USERS = f"""
from django.contrib.auth.models import User
User.objects.create_superuser("boss", "boss@example.org", "{PASSWORD}")
User.objects.create_user("viewer", password="{PASSWORD}", is_staff=True)
"""


def admin_manage(database: Path, broker: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=admin_env(database, broker),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def admin_env(database: Path, broker: str) -> dict[str, str]:
    return manage_env(
        broker, DJANGO_SETTINGS_MODULE="testsite.settings_admin", ADMIN_DATABASE=str(database)
    )


@contextmanager
def runserver(database: Path, broker: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=PROJECT,
        env=admin_env(database, broker),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = require_peer("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1800")
    driver = webdriver.Chrome(service=Service(require_peer("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser: WebDriver, site: str, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{site}/admin/login/?next=/admin/django_jobs/broker/")
    browser.find_element(By.ID, "id_username").send_keys(user)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: "/admin/django_jobs/broker/" in browser.current_url)


def cell(browser: WebDriver, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def page_says(browser: WebDriver, text: str) -> bool:
    """Whether the page's message list says ``text`` (False while the page after a click
    is still loading: the old list goes stale, or the new one is not there yet)."""
    try:
        return text in cell(browser, ".messagelist").lower()
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def send_mail(address: str, outbox: Path, to: str) -> None:
    """Queue shop's ``mail.send``, which fails while ``outbox``'s directory is missing."""
    with GearmanClient([address]) as client:
        client.submit_job("mail.send", args=[str(outbox), to], background=True)


def post_as_page(browser: WebDriver, server: str, handle: str) -> int:
    """The status of a drop POSTed from the page, with its CSRF token, as a form would."""
    status = browser.execute_script(
        """
        const token = document.querySelector("[name=csrfmiddlewaretoken]")?.value
            || document.cookie.split("; ").find(c => c.startsWith("csrftoken=")).split("=")[1];
        const body = new URLSearchParams({server: arguments[0], handle: arguments[1],
                                          action: "drop"});
        return fetch("/admin/django_jobs/broker/failed/",
                     {method: "POST", headers: {"X-CSRFToken": token}, body})
            .then(response => response.status);
        """,
        server,
        handle,
    )
    return int(status)


def statuses(browser: WebDriver) -> list[str]:
    """The status column of the job history page."""
    return [str(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "table.history .status")]


def failed_handles(address: str) -> list[str]:
    with AdminClient(address) as admin:
        return [job.handle for job in admin.show_failed()]


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def test_the_dashboard_shows_the_broker_and_retries_a_failed_job(
    tmp_path: Path, screenshots: Path
) -> None:
    database, outbox = tmp_path / "admin.sqlite3", tmp_path / "later" / "outbox.txt"
    with run_broker() as broker:
        admin_manage(database, broker.address, "migrate", "--noinput")
        admin_manage(database, broker.address, "shell", "-c", USERS)
        with Client([broker.address]) as client:
            first_report = client.submit_background("report", b"1")
            client.submit_background("report", b"2")
            client.submit_schedule(
                "report", b"", unique="daily", fields=schedule_fields(cron="0 6 * * *")
            )
            grouped = submit(client, Group([Step("part"), Step("part")], then=Step("merge")))
        send_mail(broker.address, outbox, "ada")
        with (
            gearman_worker(broker.address, "-a", "shop", "-n", "mail", "-q", "outbox"),
            runserver(database, broker.address) as site,
            chromium() as browser,
        ):
            wait_until(lambda: len(failed_handles(broker.address)) == 1)
            [handle] = failed_handles(broker.address)
            log_in(browser, site, "boss")
            with AdminClient(broker.address) as admin:
                status = {row.name: row for row in admin.status()}
                version = admin.version()
            assert cell(browser, ".version") == version
            assert cell(browser, 'tr[data-function="report"] .queued') == "2"
            assert cell(browser, 'tr[data-function="report"] .workers').startswith("0")
            assert status["report"].total == 2 and status["mail.send"].workers == 1
            assert cell(browser, 'tr[data-function="mail.send"] .workers') == "1"
            assert "0 6 * * *" in cell(browser, "table.schedules")
            callback = grouped.jobs[-1].handle
            assert cell(browser, f'table.waiting tr[data-handle="{callback}"] .progress') == (
                "0 of 2 ended"
            )
            error = cell(browser, f'tr[data-handle="{handle}"] .error')
            assert error.startswith("FileNotFoundError: [Errno 2] No such file or directory")
            assert "Traceback (most recent call last)" in error  # the worker's, in the record
            browser.save_screenshot(str(screenshots / "dashboard.png"))

            outbox.parent.mkdir()  # what the job lacked: now it can run
            browser.find_element(
                By.CSS_SELECTOR, f'tr[data-handle="{handle}"] button.retry'
            ).click()
            wait_until(lambda: page_says(browser, "queued again"))
            wait_until(lambda: outbox.exists() and "ada" in outbox.read_text())
            assert failed_handles(broker.address) == []
            browser.save_screenshot(str(screenshots / "dashboard-retried.png"))
            browser.find_element(By.CSS_SELECTOR, "a.history-link").click()
            wait_until(lambda: "successful" in statuses(browser))
            assert "failed" in statuses(browser)  # the attempt before the retry, kept too
            browser.get(
                f"{site}/admin/django_jobs/broker/history/?function=mail.send&status=failed"
            )
            assert set(statuses(browser)) == {"failed"}
            assert "FileNotFoundError" in cell(browser, "table.history")
            browser.save_screenshot(str(screenshots / "history.png"))
            # The same request the viewer makes below passes CSRF for a permitted user (the
            # redirect back to the dashboard is followed).
            assert post_as_page(browser, broker.address, "H:nobody:1") == 200

            browser.get(f"{site}/admin/django_jobs/broker/")
            browser.find_element(By.CSS_SELECTOR, 'tr[data-function="report"] .pause').click()
            wait_until(lambda: page_says(browser, "report on"))
            assert "paused" in cell(browser, ".messagelist")
            assert cell(browser, 'tr[data-function="report"] .paused') == "paused"
            with AdminClient(broker.address) as admin:
                paused = [(rule.pattern, rule.paused, rule.queued) for rule in admin.limits()]
            assert paused == [("report", True, 2)]
            browser.save_screenshot(str(screenshots / "dashboard-paused.png"))
            browser.find_element(By.CSS_SELECTOR, 'tr[data-pattern="report"] .resume').click()
            wait_until(lambda: page_says(browser, "resumed"))
            with AdminClient(broker.address) as admin:
                assert admin.limits() == []
            form = browser.find_element(By.CSS_SELECTOR, "form.cancel-job")
            form.find_element(By.NAME, "handle").send_keys(first_report.handle)
            form.find_element(By.CSS_SELECTOR, "button.cancel").click()
            wait_until(lambda: page_says(browser, "cancelled"))
            assert cell(browser, 'tr[data-function="report"] .queued') == "1"

            send_mail(broker.address, tmp_path / "nowhere" / "outbox.txt", "bob")
            wait_until(lambda: len(failed_handles(broker.address)) == 1)
            log_in(browser, site, "viewer")
            browser.get(f"{site}/admin/")  # staff without permissions find the dashboard
            browser.find_element(By.CSS_SELECTOR, 'a[href="/admin/django_jobs/broker/"]').click()
            wait_until(lambda: browser.current_url.endswith("/admin/django_jobs/broker/"))
            assert browser.find_elements(By.CSS_SELECTOR, "table.failed tr[data-handle]")
            assert browser.find_elements(By.CSS_SELECTOR, "button.retry, button.drop") == []
            assert browser.find_elements(By.CSS_SELECTOR, "button.pause, form.cancel-job") == []
            browser.save_screenshot(str(screenshots / "dashboard-viewer.png"))
            [other] = failed_handles(broker.address)
            assert post_as_page(browser, broker.address, other) == 403  # the button is not all
            assert failed_handles(broker.address) == [other]


def test_the_migration_matches_the_model(tmp_path: Path) -> None:
    admin_manage(
        tmp_path / "admin.sqlite3", "127.0.0.1:1", "makemigrations", "django_jobs", "--check",
        "--dry-run",
    )  # fmt: skip
