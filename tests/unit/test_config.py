"""Recipe loading: extends, overrides, type checks and one-line errors that name file and key."""

from pathlib import Path

import pytest

from workbench.config import load_recipe
from workbench.errors import WorkbenchError
from workbench.paths import project_root

RECIPES = sorted((project_root() / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates_and_starts_with_its_command(path):
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and ("make " in first or "workbench " in first), first


def test_legal_extends_base_and_overrides_win():
    recipe = load_recipe("legal", ["train.max_steps=5", "peft.r=4", "train.lr=0.01"])
    assert recipe.model.name == "deepseek-v3-tiny"  # from base.yaml
    assert recipe.peft.type == "lora"  # from legal.yaml
    assert (recipe.train.max_steps, recipe.peft.r, recipe.train.lr) == (5, 4, 0.01)
    assert isinstance(recipe.peft.target_modules, tuple)


def test_yaml_scientific_notation_reads_as_float():
    assert load_recipe("legal", ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("train:\n  lr: -1\n", [], "train.lr: must be > 0, got -1"),
        ("train:\n  batch_size: eight\n", [], "train.batch_size: must be int, got str 'eight'"),
        ("train:\n  learning_rate: 0.1\n", [], "train.learning_rate: unknown key"),
        ("trian:\n  lr: 0.1\n", [], "trian: unknown section"),
        ("method:\n  name: ppo\n", [], "method.name: must be one of sft, dpo, kto, orpo"),
        ("{}\n", ["train.max_steps=abc"], "train.max_steps: must be int"),
        ("{}\n", ["peft.r=0"], "peft.r: must be > 0"),
        ("{}\n", ["train.packing=true", "method.name=dpo"], "train.packing: only sft packs"),
        ("extends: nowhere.yaml\n", [], "extends: recipe 'nowhere.yaml' not found"),
        ("train: [1, 2\n", [], "invalid YAML"),
    ],
)
def test_bad_recipes_name_file_and_key(tmp_path, text, overrides, expected):
    with pytest.raises(WorkbenchError) as err:
        load_recipe(_write(tmp_path, text), overrides)
    message = str(err.value)
    assert expected in message
    assert "bad.yaml" in message and "\n" not in message


def test_unknown_recipe_name_lists_known_ones():
    with pytest.raises(WorkbenchError, match=r"unknown recipe 'legl'.*known: .*legal"):
        load_recipe("legl")


def test_circular_extends_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(WorkbenchError, match="circular"):
        load_recipe(str(tmp_path / "a.yaml"))
