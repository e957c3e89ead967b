"""Shared test setup: offline hub, a tiny model built from its config, and isolated outputs per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one torch thread each
    os.environ["OMP_NUM_THREADS"] = "1"  # (subprocesses inherit it: CLI runs, torchrun ranks)

import pytest  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

pytest_plugins = ["stores"]  # tests/stores.py: a session PostgreSQL server, migrated MLflow stores


DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                   "DS_ACCELERATOR", "ACCELERATE_USE_DEEPSPEED")


@pytest.fixture(autouse=True)
def no_distributed_leftovers():
    """A test that runs DeepSpeed in this process (one rank, gloo) sets the rendezvous variables and joins a process
    group; the next test in the same worker must not inherit them (a CLI it starts would try to join that group, and
    a Trainer would wrap its model in DDP). Restored after every test, whichever order the workers run them in."""
    saved = {key: os.environ.get(key) for key in DISTRIBUTED_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    import sys

    if "torch.distributed" in sys.modules:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if "accelerate.state" in sys.modules:  # its singletons remember the distributed set-up they first saw
        from accelerate.state import AcceleratorState, PartialState

        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()
    if "transformers.integrations.deepspeed" in sys.modules:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()  # ZeRO-3's zero.Init on from_pretrained, kept alive by a run's config


@pytest.fixture
def isolated(tmp_path):
    """Overrides that send a run's outputs and MLflow store into this test's temp dir."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {
        "uri": uri,
        "tmp": tmp_path,
        "overrides": [f"track.tracking_uri={uri}", f"train.output_dir={tmp_path / 'out'}"],
    }


@pytest.fixture
def train_recipe(isolated):
    """train_recipe(recipe, overrides, out="out") -> (finished Run, MlflowClient), outputs in this test's temp dir."""
    import mlflow

    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    def _train(recipe, overrides, out="out"):
        where = [f"track.tracking_uri={isolated['uri']}", f"train.output_dir={isolated['tmp'] / out}"]
        run = build(load_recipe(recipe, where + list(overrides)))
        try:
            run.train()
        finally:
            run.close()
        return run, mlflow.MlflowClient(isolated["uri"])

    return _train


@pytest.fixture(scope="session")
def tiny():
    """The embedded deepseek-v3-tiny model and tokenizer, built once per session."""
    from workbench.recipe.schema import ModelConfig
    from workbench.model.load import load_model

    return load_model(ModelConfig())



@pytest.fixture
def tiny_final_dir(tiny, tmp_path):
    """The tiny model saved as a finished run's `final/` directory (full weights, no adapter)."""
    from workbench.model.load import write_final_info

    model, tokenizer = tiny
    final = tmp_path / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    write_final_info(final, {"name": "deepseek-v3-tiny"}, adapter=False)
    return final


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA; on a CPU machine they are skipped with the reason shown."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def warning_marks():
    """Marks of library output that the console keeps off the terminal (it goes to <run>/workbench.log)."""
    return ("Warning", "warnings.warn", "[WARNING]", "is deprecated", "aggregation is not", "kwarg is not of type",
            "it/s]", "examples/s]")


@pytest.fixture
def finetune_cli():
    """finetune_cli(folder, *overrides, flags=()) -> CompletedProcess of `workbench finetune legal` in a subprocess,
    its MLflow store (folder/m.db) and outputs (folder/out) under folder, as a user runs it with output to a file."""
    import os
    import subprocess
    import sys

    from workbench.paths import project_root

    def run(folder, *args, flags=()):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        folder.mkdir(parents=True, exist_ok=True)
        return subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", "legal", *args,
                               f"track.tracking_uri=sqlite:///{folder}/m.db", f"train.output_dir={folder}/out", *flags],
                              capture_output=True, text=True, cwd=project_root(), env=env, timeout=1800)
    return run
