"""kdbench's builtin reporters: one output format each."""

from kdbench import hookimpl


@hookimpl
def kdbench_register_reporters(registry):
    registry.add("md", "kdbench_reporters.markdown:MarkdownReporter", description="GitHub Markdown table per dataset (tabulate)", version=1)
    registry.add("csv", "kdbench_reporters.csv:CsvReporter", description="CSV per dataset: every aggregate as a number", version=1)
