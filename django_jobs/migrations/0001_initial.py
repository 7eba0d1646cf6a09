"""The unmanaged ``Broker`` model: no table is created, only its permissions."""

from django.db import migrations


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Broker",
            fields=[],
            options={
                "managed": False,
                "default_permissions": ("view",),
                "permissions": (("control_broker", "Can retry and drop failed jobs"),),
                "verbose_name": "job broker",
                "verbose_name_plural": "job brokers",
            },
        ),
    ]
