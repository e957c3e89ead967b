"""Training data: local .jsonl/.json/.parquet files or hub datasets, every row checked for its method (load.py).

May import: track and the base modules.
"""
