"""The commands `python -m amp_luigi` runs beside the pipeline: the sandbox, the status calendar and
its metrics, the deployment check. Each reads the same settings as the `luigi` command and asks S3
(and, for `check --amplitude`, Amplitude) a bounded number of questions."""
