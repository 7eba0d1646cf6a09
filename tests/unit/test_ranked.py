"""SUBMIT_JOB_RANKED, spoolgear's own submit: a background job at any rank, delayed or not."""

from __future__ import annotations

from broker.protocol.packets import PacketType
from broker.protocol.priorities import MAX_RANK, MIN_RANK, task_rank
from tests.unit.harness import Harness

T = PacketType


def test_ranked_jobs_run_lowest_rank_first_among_gearman_priorities() -> None:
    harness = Harness()
    client = harness.peer()
    for rank, data in ((5, b"p=-4"), (-3, b"p=4"), (1, b"p=0"), (50, b"p=-49")):
        client.send(T.SUBMIT_JOB_RANKED, b"f", b"", b"%d" % rank, b"0", data)
    client.send(T.SUBMIT_JOB_HIGH_BG, b"f", b"", b"high")
    client.send(T.SUBMIT_JOB_LOW_BG, b"f", b"", b"low")
    assert [kind for kind, _ in client.received()] == [T.JOB_CREATED] * 6
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    order = []
    while (assigned := worker.grab()) is not None:
        order.append(assigned[3])
        worker.send(T.WORK_COMPLETE, assigned[0], b"")
    # Django's priorities 4 and 0 around Gearman's high (1) and normal, then low (-1).
    assert order == [b"p=4", b"high", b"p=0", b"low", b"p=-4", b"p=-49"]


def test_a_ranked_job_can_wait_for_its_time() -> None:
    harness = Harness()
    client = harness.peer()
    epoch = b"%d" % (harness.now + 60)
    client.send(T.SUBMIT_JOB_RANKED, b"f", b"", b"-5", epoch, b"later")
    assert [kind for kind, _ in client.received()] == [T.JOB_CREATED]
    worker = harness.peer()
    worker.send(T.CAN_DO, b"f")
    assert worker.grab() is None
    harness.advance(61)
    assigned = worker.grab()
    assert assigned is not None and assigned[3] == b"later"


def test_a_rank_out_of_range_is_refused() -> None:
    client = Harness().peer()
    client.send(T.SUBMIT_JOB_RANKED, b"f", b"", b"%d" % (MAX_RANK + 1), b"0", b"")
    [(kind, args)] = client.received()
    assert kind is T.ERROR and args[0] == b"INVALID_ARGUMENTS"
    assert args[1] == b"Rank must be between %d and %d" % (MIN_RANK, MAX_RANK)
    assert (task_rank(100), task_rank(-100)) == (-99, MAX_RANK)
