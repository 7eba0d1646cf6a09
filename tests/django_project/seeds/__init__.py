"""The code examples of the documents users migrate from (the uWSGI
spooler and mules docs, uwsgi_tasks' README, a spooler article, django-gearman-jbox's
README), ported as docs/moving-over.md says. Each module names its source; the tests in
tests/seeds/ run them against real brokers and workers."""
