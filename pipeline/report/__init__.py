"""The report: tables, figures and prose in reports/ from the results the stages wrote (metrics/,
records/, plots/). Nothing here trains or measures, so `make report` rebuilds it all without retraining.

build.py writes reports/README.md from one module per section, each with its tables, sentences and
figures: degradation.py, architectures.py, latency.py, heads.py, transfer.py, analysis.py. They share
the results read (results.py), how cells and tables are written (format.py) and the wording rule
(evidence.py). The report's MLflow run is pipeline/study/report_run.py.
"""
