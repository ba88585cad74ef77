"""kdbench's builtin distillation methods, one file each."""

from kdbench import hookimpl


@hookimpl
def kdbench_register_losses(registry):
    registry.add("ce", "kdbench_losses.ce:CrossEntropyOnly", description="No teacher: cross-entropy alone (the baseline every gain is measured against)", version=1)
    registry.add("kd", "kdbench_losses.kd:KD", description="Hinton et al. 2015: KL between temperature-softened teacher and student", version=1)
