"""kdbench's builtin executors, registered through the same hook as any plugin's."""

from kdbench.hookspecs import hookimpl


@hookimpl
def kdbench_register_executors(registry):
    registry.add(
        "local",
        "kdbench.executors.local:LocalExecutor",
        description="This machine: one worker per device (every CUDA device, else the CPU)",
        version=1,
    )
