"""User-facing errors: one line that names the bad file, key or row; the CLI exits with code 2."""


class WorkbenchError(Exception):
    """An error caused by the user's input (recipe, data, model name), reported in one line."""

    exit_code = 2
