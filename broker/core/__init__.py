"""Broker state and dispatch: jobs, per-function queues, uniques, workers, schedules. No I/O."""
