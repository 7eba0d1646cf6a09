"""Start-up: rebuild jobs, schedules and the failed list from what the store loaded.

Jobs come back in their stored (priority, order). A job that was running when the
broker stopped counts that as an attempt and goes to the tail of its queue. With
queue windows, a queue longer than its window comes back as its head plus a count
of jobs left in the store. Missed-firing policy for schedules: firings that fell
into the downtime coalesce into one run at start-up, then the schedule resumes
from now. Jobs and schedules taken over from another broker of a shared store while
serving come back the same way, each job at the tail of its queue.
"""

from __future__ import annotations

import logging

from broker.core.broker import Broker
from broker.core.schedules import Schedule, parse_stored
from broker.store.base import Claimed, StoredState
from broker.store.operations import WAITING, StoredSchedule

log = logging.getLogger("spoolgear.broker")


def restore(broker: Broker, state: StoredState) -> None:
    """Load ``state`` into a broker that has not served anything yet."""
    now = broker.clock()
    functions = broker.functions
    broker.handles.resume(state.next_number)
    _restore_flow_rules(broker, state)
    for queue in state.spilled:
        function = functions.get(queue.function)
        functions.queue(function, queue.priority)
        broker.pager.resume(function, queue.priority, queue.count, queue.first_seq)
        functions.mark_ready(function, queue.priority)
    interrupted = []
    waiting = []
    for stored in state.jobs:
        function = functions.get(stored.function)
        job = broker.adopt(function, stored, stored.run_at if stored.run_at > now else 0.0)
        if stored.running:
            interrupted.append(job)
        elif stored.run_at == WAITING:
            waiting.append(job)
        elif job.when:
            broker.defer(job)
        else:
            functions.queue(function, job.priority).append(job)
            functions.hold(function, job.priority, len(job.data))
            functions.mark_ready(function, job.priority)
    for job in interrupted:
        broker.requeue(job, reason="interrupted by a broker restart")
    for stored_schedule in state.schedules:
        _restore_schedule(broker, stored_schedule, now)
    for failed in state.failed:
        broker.failed.restore(broker.handles.of(failed.number), failed)
    for result in state.results:
        broker.results.restore(broker.handles.of(result.number), result)
    for job in waiting:  # once every job and result is back: what each one waits for
        broker.link_and_settle(job, stored_waiting=True)


def _restore_flow_rules(broker: Broker, state: StoredState) -> None:
    """The store's rules, then the command line's limits over them (kept in the store)."""
    flow = broker.flow
    for rule in state.flow_rules:
        flow.put(rule, stored=False)
    for given in broker.settings.flow_rules:
        rule = flow.rule(given.pattern)
        if given.rate:
            rule = rule._replace(rate=given.rate, per=given.per)
        if given.running:
            rule = rule._replace(running=given.running)
        if given.per_key:
            rule = rule._replace(per_key=given.per_key)
        flow.put(rule)


def take_over(broker: Broker, claimed: Claimed) -> None:
    """Jobs and schedules taken over from brokers that stopped, while serving."""
    now = broker.clock()
    waiting = []
    for stored in claimed.jobs:
        function = broker.functions.get(stored.function)
        job = broker.adopt(function, stored, stored.run_at if stored.run_at > now else 0.0)
        if stored.run_at == WAITING:
            waiting.append(job)
        else:
            broker.take_over(job, running=stored.running)
    for job in waiting:
        broker.link_and_settle(job, stored_waiting=True)
    for stored_schedule in claimed.schedules:
        _restore_schedule(broker, stored_schedule, now)
    log.info(
        "took over %d jobs and %d schedules from brokers that stopped",
        len(claimed.jobs),
        len(claimed.schedules),
    )


def _restore_schedule(broker: Broker, stored: StoredSchedule, now: float) -> None:
    spec = parse_stored(stored.spec)
    # A past next run is due at once; 0 was written before next runs were stored.
    schedule = Schedule(
        broker.handles.of(stored.number),
        stored.function,
        stored.unique,
        stored.data,
        spec,
        stored.next_run or spec.next_after(now),
        stored.fired,
    )
    broker.scheduler.add(schedule)
    broker.functions.get(schedule.function)
