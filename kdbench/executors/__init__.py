"""kdbench's builtin executors, registered through the same hook as any plugin's."""

from kdbench.hookspecs import hookimpl


@hookimpl
def kdbench_register_executors(registry):
    registry.add(
        "local",
        "kdbench.executors.local:LocalExecutor",
        description="This machine: worker processes on every device (every CUDA device, else the CPU), crash-isolated",
        version=1,
    )
    registry.add(
        "ray",
        "kdbench.executors.ray:RayExecutor",
        description="A Ray cluster (--ray-address, or a local one): one task per job, teachers first",
        version=1,
    )
