from django_jobs import gearman_task


@gearman_task(queue="images")
def resize(width, height):
    return width * height


@gearman_task(queue="thumbs")
def thumbnail():
    return "thumb"
