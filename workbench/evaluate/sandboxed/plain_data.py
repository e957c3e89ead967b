"""Plain data across the sandbox boundary: a tagged JSON encoding, never pickle or marshal.

Runs inside the sandboxed worker and checker (workbench/evaluate/sandbox_launch.py compiles this text into
their bootstrap); the unit tests import it as workbench.evaluate.sandboxed.plain_data. Try it:
`.venv/bin/python -c "from workbench.evaluate.sandboxed.plain_data import dumps, loads; print(loads(dumps({(1, 2): {3.0}})))"`.

Plain data is None, bool, int, float (inf and nan too), str, bytes, and list, tuple, dict, set and frozenset
of plain data, nested at most MAX_DEPTH deep: EXACT types only, so a subclass of int, str or list (which may
carry its own __eq__) is refused, as is any other object. JSON keeps None, bool, int, float and str apart by
itself (an int is written without '.', a float always with '.', an exponent, NaN or Infinity); a list is a
JSON array; the rest are objects of one key: {"tuple": [...]}, {"set": [...]}, {"frozenset": [...]},
{"bytes": "<hex>"}, {"dict": [[key, value], ...]} (so keys stay any plain, hashable value). Decoding accepts
exactly this and nothing else, and builds only the built-in types. Only the C parts of json are used
(`_json`): importing `json` would cost a sandboxed process about 10 ms of its start.
"""
import _json

MAX_DEPTH = 100
CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
SCALARS = (bool, int, float, str)
TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset}


class NotPlainData(ValueError):
    """The value (or the text) is not plain data as defined above."""


def to_tree(value, depth=0):
    kind = type(value)
    if value is None or kind in SCALARS:
        return value
    if depth >= MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    if kind is list:
        return [to_tree(item, depth + 1) for item in value]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [to_tree(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[to_tree(key, depth + 1), to_tree(item, depth + 1)] for key, item in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    raise NotPlainData(f"type {_type_name(kind)} is not plain data")


def from_tree(tree, depth=0):
    kind = type(tree)
    if tree is None or kind in SCALARS:
        return tree
    if depth >= MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    if kind is list:
        return [from_tree(item, depth + 1) for item in tree]
    if kind is dict and len(tree) == 1:
        ((tag, body),) = tree.items()
        if tag in TAGS and type(body) is list:
            try:
                return TAGS[tag](from_tree(item, depth + 1) for item in body)
            except TypeError as error:  # an unhashable member of a set
                raise NotPlainData(f"{tag}: {error}") from None
        if tag == "dict" and type(body) is list and all(type(pair) is list and len(pair) == 2 for pair in body):
            try:
                return {from_tree(key, depth + 1): from_tree(item, depth + 1) for key, item in body}
            except TypeError as error:
                raise NotPlainData(f"dict: {error}") from None
        if tag == "bytes" and type(body) is str:
            try:
                return bytes.fromhex(body)
            except ValueError as error:
                raise NotPlainData(f"bytes: {error}") from None
    raise NotPlainData(f"not a plain-data encoding: {str(tree)[:80]}")


def _type_name(kind) -> str:
    try:
        return str(type.__getattribute__(kind, "__qualname__"))[:80]
    except Exception:  # a metaclass could make even this raise
        return "object"


def _refuse(value):
    raise NotPlainData(f"type {_type_name(type(value))} is not plain data")


class _Context:  # what _json.make_scanner reads from json.JSONDecoder
    strict, object_hook, object_pairs_hook, parse_float, parse_int = True, None, None, float, int
    parse_constant, memo = CONSTANTS.__getitem__, {}


_encode = _json.make_encoder(None, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
_scan = _json.make_scanner(_Context())


def dumps(value) -> str:
    """One line of ASCII JSON (no newline inside), or NotPlainData."""
    try:
        return "".join(_encode(to_tree(value), 0))
    except NotPlainData:
        raise
    except Exception as error:  # an int past sys.get_int_max_str_digits, a recursion limit
        raise NotPlainData(f"{type(error).__name__}: {error}") from None


def loads(text):
    """The value `dumps` wrote, rebuilt from built-in types only; NotPlainData for anything else."""
    try:
        tree, end = _scan(text, 0)
    except Exception as error:  # StopIteration, JSONDecodeError, RecursionError, ValueError (int digits)
        raise NotPlainData(f"not JSON: {type(error).__name__}") from None
    if text[end:].strip():
        raise NotPlainData("text after the value")
    return from_tree(tree)
