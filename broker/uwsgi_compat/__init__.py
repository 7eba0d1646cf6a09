"""The uWSGI compatibility layer: ``spoolgear spooler`` (``spooler``, with its pre-fork
master ``prefork`` and the process set-up handlers expect, ``process``), the drop-in
``uwsgidecorators`` (``decorators``), the ``uwsgi`` module's spool API (``api``) and the
networked-spooling client (``spool_client``). Users import ``broker.uwsgidecorators``,
``broker.uwsgi_api`` and ``broker.uwsgi_client``, which are these modules."""
