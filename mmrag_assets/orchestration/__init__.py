"""Orchestration: how mmrag's commands start Dagster runs on the shared instance.

- ``instance.py``: the instance (``dagster.yaml``, pools, the dead-run sweep);
- ``runs.py``: what a finished run says;
- ``launch.py``: ``mmrag ingest`` / ``mmrag index``: plan, then one run of a named job in this process;
- ``distributed.py``: scale-out runs (shard ranges side by side in preloaded run processes, celery);
- ``celery_app.py`` / ``preload.py``: what a celery worker and a forking process import first.
"""
