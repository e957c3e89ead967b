"""Tracking with MLflow: the run tracker (tracker.py), runs that start where others ended (lineage.py), run
listings for the command line (runs.py) and read-only queries for the dashboard (dashboard_data.py).

May import: the base modules only.
"""
