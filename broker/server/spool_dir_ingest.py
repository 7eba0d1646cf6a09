"""Spool-directory ingestion: uWSGI spool files become durable jobs.

uWSGI apps write spool files into a directory (``--spooler-external DIR``, or
one a uWSGI spooler used to own). Every ``--ingest-interval`` the directory and
its all-digit priority subdirectories are listed, and each spool file is taken
under uWSGI's own protocol (docs/uwsgi.md, "Spool directories"):
open, non-blocking fcntl write lock (a writer still writing holds it, so the
file is skipped until it is complete), check it was not unlinked meanwhile,
read it. The job is submitted with the lock held; the file is unlinked only
once the job is stored, so a crash at any point leaves the file for the next
start (at-least-once, like uWSGI).

Files that can never become jobs (malformed vars, a refused ``priority``, a
file over the size limit, one torn by a writer that died) are moved to the
``spoolgear-rejected`` subdirectory with a log line naming the reason; files
whose names are not uWSGI's are left alone. A file the broker refuses for now
(its queue is full, see ``maxqueue``) stays and is tried again.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.errors import ProtocolError
from broker.protocol.spool_request import SpoolJob, SpoolRefused, spool_job
from broker.protocol.uwsgi import split_spool
from broker.server.context import ServerContext
from broker.server.uwsgi_listener import submit_spool_job

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger("spoolgear.ingest")

SPOOL_FILE_PREFIX = "uwsgi_spoolfile_on_"
REJECTED_DIR = "spoolgear-rejected"
# An unlocked file still shorter than its header says after this many seconds was
# left by a writer that died (a live writer locks the file right after creating it).
TORN_FILE_GRACE = 10.0


@dataclass(slots=True)
class TakenFile:
    """A locked spool file: the job it becomes, or why it cannot become one."""

    path: str
    fd: int
    written: int
    """Modification time in nanoseconds (for ``at`` files, their time)."""
    job: SpoolJob | None
    problem: str = ""


def take_files(
    directory: str, skip: set[str], *, limit: int, max_size: int, default_function: bytes
) -> list[TakenFile]:
    """Lock and read up to ``limit`` spool files not in ``skip`` (blocking: run on a thread).

    ``skip`` must hold the files this process already has locked: fcntl locks
    belong to the process, so locking such a file again would succeed.
    """
    taken: list[TakenFile] = []
    for path in _spool_files(directory):
        if len(taken) >= limit:
            break
        if path not in skip:
            item = _take(path, max_size, default_function)
            if item is not None:
                taken.append(item)
    taken.sort(key=lambda item: item.written)  # the order the uWSGI apps spooled them in
    return taken


def _spool_files(directory: str, *, priority_dirs: bool = True) -> Iterator[str]:
    """The spool files of a directory and of its priority subdirectories."""
    subdirectories = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(SPOOL_FILE_PREFIX) and entry.is_file(follow_symlinks=False):
                yield entry.path
            elif priority_dirs and entry.name.isdigit() and entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.path)
    for subdirectory in subdirectories:
        yield from _spool_files(subdirectory, priority_dirs=False)


def _take(path: str, max_size: int, default_function: bytes) -> TakenFile | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None  # another consumer took it
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return None  # being written, or run by a uWSGI spooler
        raise
    status = os.fstat(fd)
    if status.st_nlink == 0:
        os.close(fd)  # unlinked between our open and our lock
        return None
    job, problem = None, ""
    if status.st_size > max_size:
        problem = f"{status.st_size} bytes is over the limit of {max_size} (--max-packet-size)"
    else:
        with os.fdopen(os.dup(fd), "rb") as reader:
            data = reader.read()
        try:
            block, body = split_spool(data)
            job = spool_job(block, body, default_function=default_function)
        except SpoolRefused as exc:
            problem = str(exc)
        except ProtocolError as exc:
            if time.time() - status.st_mtime < TORN_FILE_GRACE:
                os.close(fd)
                return None  # created but not yet locked by its writer: look again later
            problem = f"torn or not a spool file: {exc}"
    return TakenFile(path, fd, status.st_mtime_ns, job, problem)


class SpoolIngest:
    """Watches one directory for the life of the server."""

    def __init__(self, context: ServerContext, directory: str) -> None:
        self.context = context
        self.directory = os.path.realpath(directory)
        self.in_flight: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _watch(self) -> None:
        config = self.context.config
        loop = asyncio.get_running_loop()
        log.info("ingesting spool files from %s", self.directory)
        while True:
            try:
                taken = await loop.run_in_executor(
                    None,
                    lambda: take_files(
                        self.directory,
                        set(self.in_flight),
                        limit=config.ingest_batch,
                        max_size=config.max_packet_size,
                        default_function=config.spool_function.encode(),
                    ),
                )
            except OSError as exc:
                log.error("cannot read spool directory %s: %s", self.directory, exc)
                taken = []
            for item in taken:
                self._submit(item)
            await asyncio.sleep(config.ingest_interval)

    def _submit(self, item: TakenFile) -> None:
        if item.job is None:
            self._reject(item)
            return
        self.in_flight.add(item.path)
        submit_spool_job(
            self.context, item.job, lambda handle, why: self._stored(item, handle, why)
        )

    def _stored(self, item: TakenFile, handle: bytes | None, why: str) -> None:
        self.in_flight.discard(item.path)
        try:
            if handle is None:
                log.warning(
                    "spool file %s refused for now (%s); trying again later", item.path, why
                )
                return
            os.unlink(item.path)
            log.info("spool file %s stored as job %s", item.path, handle.decode())
        finally:
            os.close(item.fd)  # releases the lock

    def _reject(self, item: TakenFile) -> None:
        rejected = os.path.join(self.directory, REJECTED_DIR)
        try:
            os.makedirs(rejected, exist_ok=True)
            os.rename(item.path, os.path.join(rejected, os.path.basename(item.path)))
            log.error("spool file %s moved to %s: %s", item.path, rejected, item.problem)
        except OSError as exc:
            log.error(
                "spool file %s cannot become a job (%s) and cannot be moved aside: %s",
                item.path,
                item.problem,
                exc,
            )
        finally:
            os.close(item.fd)
