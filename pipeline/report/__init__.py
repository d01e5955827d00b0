"""The report: tables, figures and prose in reports/ from the results the stages wrote (metrics/,
records/, plots/). Nothing here trains or measures, so `make report` rebuilds it all without retraining.

build.py writes reports/README.md from one module per section, each with `section(inputs) -> Section`
(section.py: its tables, figures, Markdown and headline numbers), in the order of build.SECTIONS:
degradation.py, architectures.py, latency.py, heads.py, transfer.py, analysis.py. They share the results
read (results.py), how cells, tables and verdicts are written (format.py) and the evidence rules
(evidence.py: each claim's test and threshold, returned as a Verdict the sections put into words).
The report's MLflow run is pipeline/study/report_run.py.
"""
