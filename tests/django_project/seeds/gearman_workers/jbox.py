"""django-gearman-jbox README (seeds/004): tasks, names, parameters and queues.

Ported: ``import django_gearman_jbox.decorators.gearman_task`` became ``from django_jobs
import gearman_task``; ``pass`` bodies return what they got, so a test can see it. The
README's snippets each define ``my_task_function`` named 'my-task-name'; side by side
in one module each needs its own name (a second function under one name is refused).
"""

from django_jobs import gearman_task


@gearman_task()
def my_task_function(foo):
    return {"foo": foo}


@gearman_task(name="my-task-name")
def my_named_task_function(foo):
    return {"foo": foo}


@gearman_task(name="my-task-name-three")
def my_three_argument_task(one, two, three):
    return [one, two, three]


@gearman_task(name="my-task-name-reserved")
def my_reserved_task(background, unique):
    return {"background": background, "unique": unique}


@gearman_task(name="task_foo", queue="foo")
def function_foo(some_arg):
    return some_arg


@gearman_task(name="task_bar", queue="bar")
def function_bar(some_arg):
    return some_arg


@gearman_task(name="task_babar", queue="bar")
def function_babar(some_arg):
    return some_arg


@gearman_task(name="foo")
def foo(sentence):
    return sentence.upper()
