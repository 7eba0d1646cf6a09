"""Django's Tasks framework (``django.tasks``, or the django-tasks backport before Django
6) on spoolgear: the backend that queues tasks and reads their results back from the
broker, and the worker that runs them."""
