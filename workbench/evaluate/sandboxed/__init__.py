"""Programs that run inside the sandbox: bootstrap.py, then one role (program.py, worker.py or checker.py; the
worker and checker after plain_data.py). workbench/evaluate/sandbox_launch.py compiles their text and hands the
code objects in; the sandbox's own modules never import them (the tests import plain_data.py to check it).
"""
