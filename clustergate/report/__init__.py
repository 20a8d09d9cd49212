"""The HTML report of a run and the nightly history it is compared with.

- ``clustergate.report.render.write_report(summary, path, history)``: called at the end of every
  run by the process that writes summary.json (``clustergate.results.SummaryWriter``).
- ``clustergate.report.history.settings_from_config``: the history settings of a run.

This package file imports nothing: matplotlib takes a second or two to load, and only the
process that writes the report (once per run) needs it.
"""
