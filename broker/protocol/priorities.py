"""Priorities and queue ranks: the vocabulary the wire, the core, the stores and the clients
share, so none of them reaches into another for it."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """Queue priorities, numbered as gearmand's persistent queues store them."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


# A queue's rank: lower runs first. Gearman's three priorities are ranks 0-2; a uWSGI
# spool request's numeric ``priority`` P is rank P - SPOOL_RANK_OFFSET, so prioritised
# spool jobs run before everything else, lower numbers first, as uWSGI's priority
# directories do (docs/uwsgi.md, "From vars to a job").
SPOOL_RANK_OFFSET = 1000
# Django's Tasks framework orders priorities -100..100, higher first; priority P is rank
# 1 - P (SUBMIT_JOB_RANKED), so Django's 1, 0 and -1 are Gearman's high, normal and low.
TASK_PRIORITY_LIMIT = 100
MIN_RANK = -SPOOL_RANK_OFFSET
MAX_RANK = 1 + TASK_PRIORITY_LIMIT


def spool_rank(priority: int | None) -> int:
    """The rank of a spool request with this ``priority`` var (``None``: not given)."""
    return int(Priority.NORMAL) if priority is None else priority - SPOOL_RANK_OFFSET


def task_rank(priority: int) -> int:
    """The rank of a Tasks framework priority (-100..100, higher runs first)."""
    return 1 - priority


def priority_index(rank: int) -> int:
    """The Gearman priority a rank is reported (and limited by ``maxqueue``) as, as a
    plain number: what the submit path indexes with (making an enum member costs more
    than the rest of a limit check)."""
    return 0 if rank <= 0 else (rank if rank < 2 else 2)


def gearman_priority(rank: int) -> Priority:
    """The Gearman priority a rank is reported (and limited by ``maxqueue``) as."""
    return Priority(priority_index(rank))
