"""What suites write for people: Markdown tables, the paper's table layouts and plots, from a suite's
results.json (never from live runs): a report can always be rebuilt (``--report-only``)."""
