"""Recipes from YAML: `extends:`, `dotted.key=value` overrides, and one-line errors naming the file and key.

    from workbench.recipe.load import load_recipe
    recipe = load_recipe("legal", overrides=["train.max_steps=5"])

A recipe is a name under `recipes/` or a path. It may `extends:` another recipe (a name or a path
relative to it); mappings merge key by key, everything else is replaced. Overrides are
`dotted.key=value`, parsed as YAML and type-checked like the file by the schema (workbench.recipe.schema).
Every error is one line naming the file and the dotted key, e.g.
`recipes/legal.yaml: train.lr: must be > 0, got -1`.

YAML is read with every scalar as text (`yaml.BaseLoader`) and typed by the schema, so a run id made
only of digits stays the string it was written as, `2e-4` is a float, and `yes` is not a run name.
"""

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from workbench.errors import WorkbenchError
from workbench.files import read_text
from workbench.paths import project_root, recipes_dir
from workbench.recipe.schema import SECTIONS, Recipe, did_you_mean

NULLS = ("null", "Null", "NULL", "~")


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe name (`legal`) under recipes/, or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise WorkbenchError(f"{name_or_path}: recipe file not found")
        return candidate.resolve()
    found = sorted(recipes_dir().rglob(f"{name_or_path}.yaml"))
    if not found:
        known = sorted(p.stem for p in recipes_dir().rglob("*.yaml"))
        raise WorkbenchError(f"unknown recipe '{name_or_path}'{did_you_mean(name_or_path, known)}: no recipes/{name_or_path}.yaml "
                             f"(known: {', '.join(known) or 'none'})")
    return found[0]


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    raw = _read_with_extends(path, seen=())
    label = display_path(path)
    for item in overrides:
        _apply_override(raw, item, label)
    try:
        return Recipe.model_validate({**raw, "name": path.stem, "path": str(path)})
    except ValidationError as exc:
        raise WorkbenchError(f"{label}: {_describe(exc)}") from None


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


class _Loader(yaml.BaseLoader):
    """Every scalar as text (the schema types it) or None; a key given twice in one mapping is an error."""

    def construct_scalar(self, node):
        value = super().construct_scalar(node)
        return None if value in NULLS and node.style is None else value  # "null" in quotes stays text

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key) for key, _ in node.value]
        for key in keys:
            if keys.count(key) > 1:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", node.start_mark)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(read_text(path, display_path(path)), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise WorkbenchError(f"{display_path(path)}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        raise WorkbenchError(f"{display_path(path)}: the recipe is empty (write at least `extends: base.yaml`)")
    if not isinstance(data, dict):
        raise WorkbenchError(f"{display_path(path)}: a recipe must be a mapping of sections, got a {type(data).__name__}")
    return data


def _read_with_extends(path: Path, seen: tuple[Path, ...]) -> dict:
    if path in seen:
        raise WorkbenchError(f"{display_path(path)}: extends: circular chain {' -> '.join(map(display_path, seen + (path,)))}")
    data = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise WorkbenchError(f"{display_path(path)}: extends: must name one recipe (a name or a path), got {parent_ref!r}")
    parent_path = path.parent / parent_ref
    if not parent_path.is_file():
        try:
            parent_path = resolve_recipe_path(parent_ref)
        except WorkbenchError:
            raise WorkbenchError(f"{display_path(path)}: extends: recipe '{parent_ref}' not found") from None
    return _merge(_read_with_extends(parent_path.resolve(), seen + (path,)), data)


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _apply_override(raw: dict, item: str, label: str) -> None:
    key, sep, text = item.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise WorkbenchError(f"{label}: override '{item}': expected dotted.key=value")
    try:
        value = yaml.load(text, Loader=_Loader) if text else None
    except yaml.YAMLError:
        value = text
    node = raw
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise WorkbenchError(f"{label}: {'.'.join(parts[:depth + 1])}: cannot override inside a non-mapping value")
    node[parts[-1]] = value


BOUNDS = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}", "less_than_equal": "<= {le}"}


KINDS = {"int": "an integer", "float": "a number", "finite": "a finite number", "bool": "true or false", "string": "text",
         "tuple": "a list", "list": "a list", "dict": "a mapping", "model": "a mapping"}


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    error, more = errors[0], len(errors) - 1
    loc = [str(p) for p in error["loc"]]
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    if error["type"] == "missing":
        return f"{key}: missing (it is required){extra}"
    if error["type"] == "value_error":
        return f"{key}{': ' if key else ''}{error['ctx']['error']}{extra}"
    if error["type"] == "extra_forbidden":
        known = list(SECTIONS) + ["description"] if len(loc) == 1 else list(_model_at(error["loc"][:-1]).model_fields)
        what = "section" if len(loc) == 1 else "key"
        return f"{key}: unknown {what}{did_you_mean(loc[-1], known)} (known: {', '.join(known)}){extra}"
    if error["type"] == "literal_error":
        options = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"{key}: must be one of {options}, got {_shown(error['input'])}{did_you_mean(error['input'], options.split(', '))}{extra}"
    kind = error["type"].split("_")[0]
    message = ("must be " + BOUNDS[error["type"]].format(**{k: f"{v:g}" if isinstance(v, float) else v
                                                                for k, v in error["ctx"].items()})
               if error["type"] in BOUNDS else "must not be empty" if error["type"] in ("string_too_short", "too_short")
               else f"must be {KINDS[kind]}" if kind in KINDS else error["msg"])
    return f"{key}: {message}, got {_shown(error['input'])}{extra}"


def _model_at(loc) -> type[BaseModel]:
    """The schema class at a location such as ("train", "stages", 0): the one an unknown key was found in."""
    import typing

    model = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        while not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            annotation = next(a for a in typing.get_args(annotation) if a is not Ellipsis)
        model = annotation
    return model


def _shown(value) -> str:
    return "null" if value is None else str(value) if isinstance(value, (str, int, float)) else repr(value)
