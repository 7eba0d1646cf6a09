"""Sending jobs to the broker: the client, the payloads a call becomes, and the
transactional enqueue that waits for ``transaction.atomic()`` to commit."""
