"""kdbench's builtin reporters: one output format each."""

from kdbench import hookimpl

REPORTERS = [
    ("md", "markdown:MarkdownReporter", "GitHub Markdown table per dataset (tabulate)"),
    ("csv", "csv:CsvReporter", "CSV per dataset: every aggregate as a number"),
    ("json", "json:JsonReporter", "JSON per dataset: rows, aggregates and the runs' environment"),
    ("latex", "latex:LatexReporter", "LaTeX booktabs table per dataset, ready for a paper"),
    ("html", "html:HtmlReporter", "Standalone HTML page per dataset with sortable columns"),
    ("plots", "plots:PlotReporter", "Accuracy vs latency/FLOPs with Pareto fronts, and KD gains (PNG + SVG)"),
]


@hookimpl
def kdbench_register_reporters(registry):
    for name, target, description in REPORTERS:
        registry.add(name, f"kdbench_reporters.{target}", description=description, version=1)
