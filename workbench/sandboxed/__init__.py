"""Programs that run inside the sandbox (workbench/sandbox.py reads their text; nothing imports them)."""
