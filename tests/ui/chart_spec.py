"""Reading what the dashboard drew: run labels and plotly specs (plotly 7 sends arrays as base64)."""

import base64
import json

import numpy as np


def label(run_name: str, run_id: str, recipe: str = "legal") -> str:
    return f"{recipe} / {run_name} ({run_id[:8]})"


def figures(at) -> list[dict]:
    """Every plotly chart of the page as its JSON spec."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def decode(array) -> np.ndarray:
    """Plotly 7 sends arrays as {'dtype', 'bdata'} (base64); plain lists pass through."""
    if isinstance(array, dict) and "bdata" in array:
        values = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = array.get("shape")
        return values.reshape([int(n) for n in str(shape).split(",")]) if shape else values
    return np.asarray(array)
