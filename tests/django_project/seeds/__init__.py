"""The code examples of the documents users migrate from (shared/reference/seeds/), ported
as the README's "Moving over" says. Each module names its source; the tests in
tests/seeds/ run them against real brokers and workers."""
