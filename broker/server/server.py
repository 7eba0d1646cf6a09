"""The server object: builds the broker, owns the listeners and the shutdown sequence."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import TextIO

from broker import build
from broker.addresses import parse_listen_address, uwsgi_address
from broker.banner import format_banner
from broker.config import ServerConfig, load_permissions
from broker.core.access import Allowed
from broker.core.admin_commands import AdminCommands
from broker.core.broker import Broker
from broker.core.journal import Journal
from broker.core.model import Cancellable
from broker.core.restore import restore
from broker.errors import ConfigurationError, StoreUnavailable
from broker.server.committer import Committer
from broker.server.connection import GearmanConnection
from broker.server.context import ServerContext
from broker.server.metrics import MetricsServer, Snapshot, function_figures, on_loop
from broker.server.spool_dir_ingest import SpoolIngest
from broker.server.systemd import notify
from broker.server.tls_listener import TLSListener, bind
from broker.server.uwsgi_listener import SpoolConnection
from broker.store import open_store
from broker.store.base import PagingStore, SharedStore, Store, StoredState
from broker.tls import ServerTLS

log = logging.getLogger("spoolgear.server")
# The longest wait between two looks for idle function names.
_FORGET_SWEEP_SECONDS = 60.0

# How often a graceful shutdown checks whether the last job has finished.
_GRACEFUL_POLL_SECONDS = 0.2


def _is_socket(path: str) -> bool:
    return os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)


class BrokerServer:
    """Protocol factory, connection registry and lifecycle for one broker."""

    def __init__(self, config: ServerConfig, store: Store, state: StoredState) -> None:
        self.config = config
        self.store = store
        self.loop = asyncio.get_running_loop()
        self._turn_end_pending = False
        self.broker = Broker(
            config.broker_settings(),
            call_later=self._call_later,
            journal=Journal.resuming(state) if store.durable else None,
            paging_store=store if isinstance(store, PagingStore) else None,
            window=config.queue_window,
        )
        restore(self.broker, state)
        self.committer = Committer(
            self.broker,
            store,
            commit_delay=config.commit_delay,
            lazy_commit_delay=config.lazy_commit_delay,
            on_failure=self._store_failed,
        )
        self.admin = AdminCommands(
            self.broker,
            verbose=config.verbose,
            request_shutdown=self.request_shutdown,
            control_from=Allowed(config.admin_allow),
            control_names=frozenset(config.admin_allow_names),
            shared=store if isinstance(store, SharedStore) else None,
        )
        self.tls = ServerTLS(config.tls_files) if config.tls_listening else None
        self.context = ServerContext(
            config=config,
            broker=self.broker,
            admin=self.admin,
            loop=self.loop,
            end_turn_soon=self._end_turn_soon,
            after_commit=self.committer.after_commit,
            allowed=Allowed(config.allow) if config.allow else Allowed.everyone(),
            permissions=load_permissions(config.permissions) if config.permissions else None,
        )
        self._listeners: list[asyncio.Server | TLSListener] = []
        self._ingests: list[SpoolIngest] = []
        self._stopped = asyncio.Event()
        self.failure: BaseException | None = None
        """Why the store stopped accepting writes, if it did: the broker exits non-zero."""
        self._next_forget = 0.0
        self._graceful_task: asyncio.Task[None] | None = None
        self._listening = False
        self._stopping = False
        self.metrics: MetricsServer | None = None

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """The core's timers: what one does is written and committed like a packet's."""
        return self.loop.call_later(delay, self._timer_fired, callback)

    def _timer_fired(self, callback: Callable[[], None]) -> None:
        callback()
        self._end_turn_soon()

    def _end_turn_soon(self) -> None:
        if not self._turn_end_pending:
            self._turn_end_pending = True
            self.loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        """Once per loop turn with work: write replies, start committing the journal."""
        self._turn_end_pending = False
        self.broker.flush()
        self.committer.kick()

    def _store_failed(self, error: BaseException) -> None:
        log.critical("stopping: jobs can no longer be made durable")
        self.failure = error
        self.broker.refuse_gated(f"the job store failed: {error}".encode())
        self.request_shutdown(False)

    def _sweep(self) -> None:
        """Close connections that started a packet and stalled (``--packet-timeout``)."""
        now = self.loop.time()
        for connection in [c for c in self.context.connections if c.overdue(now)]:
            connection.close_overdue()
        forget_after = self.config.forget_idle_after
        if forget_after and now >= self._next_forget:
            self._next_forget = now + min(forget_after, _FORGET_SWEEP_SECONDS)
            forgotten = self.broker.forget_idle_functions(forget_after)
            if forgotten:
                log.info("forgot %d idle function names", forgotten)
        self.broker.results.expire()
        if self.broker.batch_waiting():
            self._end_turn_soon()
        self.loop.call_later(self._sweep_interval, self._sweep)

    async def start(self) -> list[str]:
        """Bind the listeners and start ingesting; returns ``name=address`` per listener."""
        self._sweep_interval = min(1.0, self.config.packet_timeout / 4)
        self.loop.call_later(self._sweep_interval, self._sweep)
        config = self.config

        def gearman() -> asyncio.Protocol:
            return GearmanConnection(self.context)

        def spool() -> asyncio.Protocol:
            return SpoolConnection(self.context)

        main = (config.listen, config.port)
        if config.ssl:
            bound = [await self._listen("gearmans", main, gearman, "Gearman port")]
        else:
            bound = [await self._listen("gearman", main, gearman)]
        if config.plain_listen:
            plain = parse_listen_address(config.plain_listen)
            bound.append(await self._listen("gearman", plain, gearman))
        for address in config.uwsgi_sockets:
            bound.append(await self._listen("uwsgi", uwsgi_address(address), spool))
        for address in config.suwsgi_sockets:
            bound.append(await self._listen("suwsgi", uwsgi_address(address), spool, "uwsgi door"))
        for directory in self.config.spool_ingest:
            ingest = SpoolIngest(self.context, directory)
            ingest.start()
            self._ingests.append(ingest)
        if config.metrics_listen:
            host, port = config.metrics_address()
            snapshot = on_loop(self.loop, self.snapshot)
            self.metrics = MetricsServer(host, port, snapshot, config.metrics_max_functions)
            bound.append(f"metrics={self.metrics.address}")
        self._listening = True
        return bound

    def snapshot(self) -> Snapshot:
        """The figures the metrics endpoint reports (on the loop)."""
        broker, context, committer = self.broker, self.context, self.committer
        ready = ""
        if self.failure is not None:
            ready = f"the store failed: {self.failure}"
        elif self._stopping:
            ready = "shutting down"
        elif not self._listening:
            ready = "starting"
        elif time.monotonic() > broker.lease_deadline:
            ready = "the lease on the shared store has not been renewed lately"
        return Snapshot(
            functions=[function_figures(f) for f in broker.functions.by_name.values()],
            failed_jobs=len(broker.failed),
            kept_results=len(broker.results),
            flow_rules=broker.flow.rules(),
            kept_result_bytes=broker.results.bytes,
            queued_payload_bytes=broker.functions.queued_bytes,
            schedule_firings=broker.scheduler.firings,
            commits=committer.commits,
            taken_over=committer.taken_over,
            batch_operations=committer.batch_operations.copy(),
            commit_seconds=committer.commit_seconds.copy(),
            sync_seconds=committer.sync_seconds.copy(),
            connections={"gearman": len(context.connections), "uwsgi": context.spool_connections},
            bytes_in=context.bytes_in,
            bytes_out=context.bytes_out,
            ready=ready,
        )

    async def _listen(
        self,
        kind: str,
        target: tuple[str, int] | str,
        door: Callable[[], asyncio.Protocol],
        tls_door_name: str = "",
    ) -> str:
        """Bind a TCP address or a unix socket path for ``door`` (behind TLS when
        ``tls_door_name`` names it); returns ``kind=address``."""
        if isinstance(target, str) and _is_socket(target):
            os.unlink(target)  # left by a previous run
        if tls_door_name:
            assert self.tls is not None  # config: a TLS listener has its files
            sock = bind(target)
            self._listeners.append(TLSListener(self.context, self.tls, sock, door, tls_door_name))
        elif isinstance(target, str):
            listener = await self.loop.create_unix_server(door, target, backlog=1024)
            self._listeners.append(listener)
            sock = listener.sockets[0]
        else:
            listener = await self.loop.create_server(
                door, *target, reuse_address=True, backlog=1024
            )
            self._listeners.append(listener)
            sock = listener.sockets[0]
        if isinstance(target, str):
            return f"{kind}={target}"
        host, port = sock.getsockname()[:2]
        return f"{kind}={host}:{port}"

    def announce(self, bound: list[str], out: TextIO = sys.stdout) -> None:
        loop = "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"
        core = "compiled" if build.COMPILED else "python"
        log.info("running the %s on the %s event loop", build.DESCRIPTION, loop)
        out.write(format_banner(bound, store=self.store.describe(), core=core, loop=loop) + "\n")
        out.flush()
        notify(f"READY=1\nSTATUS=listening {' '.join(bound)}\nMAINPID={os.getpid()}")

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.request_shutdown, False)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: re-read the TLS files and the permissions file for new connections;
        what fails to load is logged and the loaded version stays in use."""
        config = self.config
        try:
            if self.tls is not None:
                self.tls.reload()
            if config.permissions:
                self.context.permissions = load_permissions(config.permissions)
        except ConfigurationError as exc:
            log.error("reload failed, keeping the loaded files: %s", exc)
            return
        log.info("reloaded the TLS and permissions files for new connections")

    def request_shutdown(self, graceful: bool) -> None:
        """Immediate: stop now. Graceful: refuse new connections, stop once no job is left."""
        if not self._stopping:
            notify("STOPPING=1")
        self._stopping = True
        for listener in self._listeners:
            listener.close()
        for ingest in self._ingests:
            ingest.stop()
        if not graceful:
            self.loop.call_soon(self._stop)
        elif self._graceful_task is None:
            self._graceful_task = self.loop.create_task(self._stop_when_idle())

    async def _stop_when_idle(self) -> None:
        while self.broker.has_jobs():
            await asyncio.sleep(_GRACEFUL_POLL_SECONDS)
        self._stop()

    def _stop(self) -> None:
        self.broker.flush()  # replies still buffered, such as the OK to `shutdown`
        for connection in list(self.context.connections):
            connection.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
        if self.metrics is not None:
            self.metrics.close()
        for listener in self._listeners:
            await listener.wait_closed()
        if self.failure is not None:
            self.committer.abandon()
            raise StoreUnavailable(str(self.failure)) from self.failure
        await self.committer.close()


# The cyclic garbage collector's thresholds in a broker process. Python's (700, 10, 10)
# run a collection every 700 new objects and, as queues grow, full ones over every queued
# job: about a tenth of the CPU of durable enqueue (perf). The broker's cycles (a closed
# connection and its session) are few, so collecting less often costs little memory and
# bought 20-40% of background enqueue (bench/RESULTS.md).
GC_THRESHOLDS = (50_000, 20, 100)


async def serve(config: ServerConfig, out: TextIO = sys.stdout) -> None:
    """Run a broker until it is asked to stop (signal or admin ``shutdown``)."""
    gc.set_threshold(*GC_THRESHOLDS)
    store = open_store(
        config.store,
        page_bytes=config.page_bytes,
        retry_seconds=config.store_retry,
        lease_seconds=config.store_lease,
        sync=config.sync,
    )
    state = await asyncio.get_running_loop().run_in_executor(None, store.load, config.queue_window)
    for problem in state.problems:
        log.error("%s", problem)
    log.info(
        "loaded %d jobs (%d more left in the store until needed), %d schedules and "
        "%d failed jobs from %s",
        len(state.jobs),
        sum(q.count for q in state.spilled),
        len(state.schedules),
        len(state.failed),
        store.describe(),
    )
    server = BrokerServer(config, store, state)
    bound = await server.start()
    server.install_signal_handlers()
    server.announce(bound, out)
    await server.wait_stopped()
    log.info("spoolgear stopped")
