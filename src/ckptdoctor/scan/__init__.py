"""Fleet scan: many checkpoints, local or remote (fsspec), results in SQLite, resumable.

Layers: ``sources`` lists files, ``task`` analyses one file (reads only the
bytes it needs), ``store`` is the single SQLite writer, ``runner`` spreads
tasks over processes or a Dask cluster.
"""
