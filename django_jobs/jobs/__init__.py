"""Which functions are jobs: ``@gearman_task`` records them by name and queue, and
discovery imports each app's worker modules so every process knows the same names."""
