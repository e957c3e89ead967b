"""Programs that run inside the sandbox (workbench/evaluate/sandbox.py reads their text; nothing imports them)."""
