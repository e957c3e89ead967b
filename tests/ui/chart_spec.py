"""Reading what the dashboard drew: run labels, plotly specs (plotly 7 sends arrays as base64) and how far
apart two colours look (CIELAB distance)."""

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


def colour_distance(first: str, second: str) -> float:
    """CIE76 delta E between two '#rrggbb' colours (sRGB, D65): about 2 is barely visible; Streamlit's own two
    default blues, #0068c9 and #83c9ff, are 46 apart."""
    def lab(colour: str) -> np.ndarray:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
        linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
        f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
        f = np.where(f ** 3 > 0.008856, f, (xyz / np.array([0.95047, 1.0, 1.08883])) * 7.787 + 16 / 116)
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])

    return float(np.linalg.norm(lab(first) - lab(second)))
