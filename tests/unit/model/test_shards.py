"""Loading one process's share of a checkpoint (workbench.model.shards) against transformers' own loading.

The embedded model is saved in several safetensors shards (an index file, as real checkpoints are); each share's
dense tensors and its experts' rows must equal what `from_pretrained` loads, in the same dtypes, and the reader
must never open another process's experts (counted at the shard reader, independently of the loaded values).
The expert-parallel training checks (tests/scale/ep_checks.py) load the AutoEP model this way and compare its
loss and every gradient with one process that loaded everything.
"""

import re

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model import shards
from workbench.model.shards import expert_rows, load_expert_share

EXPERT_KEY = re.compile(r".*\.mlp\.experts\.(\d+)\..*")


@pytest.fixture(scope="module")
def sharded(tiny, tmp_path_factory):
    model, _ = tiny
    folder = tmp_path_factory.mktemp("sharded")
    model.save_pretrained(folder, max_shard_size="300KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("model-*.safetensors"))) >= 4
    return folder


def _reference(folder, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, experts_implementation="eager")


def test_expert_rows_are_autoeps_consecutive_blocks():
    assert [list(expert_rows(8, r, 4)) for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert list(expert_rows(8, 0, 1)) == list(range(8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("rank,size", [(0, 1), (1, 2), (3, 4)])
def test_a_share_holds_the_dense_weights_and_its_experts_as_from_pretrained_loads_them(sharded, monkeypatch, dtype,
                                                                                       rank, size):
    read = []
    original = shards._Reader.read_into
    monkeypatch.setattr(shards._Reader, "read_into", lambda self, name, dest: read.append(name) or original(self, name, dest))
    model = load_expert_share(sharded, _reference(sharded, dtype).config, dtype, rank, size,
                              experts_implementation="eager")
    reference = _reference(sharded, dtype).state_dict()
    first, end = model.expert_share[2:]
    assert (first, end) == (rank * 8 // size, (rank + 1) * 8 // size)
    got = model.state_dict()
    assert set(got) == set(reference)
    for name, want in reference.items():
        assert got[name].dtype == want.dtype, name  # the router's correction bias stays fp32 under bf16
        value = got[name][first:end] if ".mlp.experts." in name else got[name]
        assert torch.equal(value, want[first:end] if ".mlp.experts." in name else want), name
    experts_read = {int(EXPERT_KEY.match(n).group(1)) for n in read if EXPERT_KEY.match(n)}
    assert experts_read == set(range(first, end))  # another process's experts are never read
    assert not model.training


def test_a_checkpoint_missing_a_tensor_is_one_line_naming_it(sharded, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sharded, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    del index["weight_map"]["model.layers.1.mlp.experts.5.up_proj.weight"]
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    config = _reference(sharded, torch.float32).config
    load_expert_share(broken, config, torch.float32, 0, 2)  # rank 0 holds experts 0..3: nothing it needs is gone
    with pytest.raises(WorkbenchError, match=r"^model.name: the checkpoint in .* has no tensor "
                                             r"'model.layers.1.mlp.experts.5.up_proj.weight'"):
        load_expert_share(broken, config, torch.float32, 1, 2)


def test_a_folder_without_safetensors_is_one_line(tmp_path):
    from transformers import AutoConfig

    from workbench.model.load import resolve_model
    from workbench.recipe.schema import ModelConfig

    config = AutoConfig.from_pretrained(resolve_model(ModelConfig()).weights_dir)
    with pytest.raises(WorkbenchError, match="has no model.safetensors or model.safetensors.index.json"):
        load_expert_share(tmp_path, config, torch.float32, 0, 2)


def test_an_fp8_tensor_or_a_cut_off_shard_is_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(4, dtype=torch.float8_e4m3fn)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WorkbenchError, match="'a' is stored as F8_E4M3, which this loader does not read"):
        shards._Reader(tmp_path).read_into("a", torch.empty(4))
    save_file({"b": torch.arange(64, dtype=torch.float32)}, str(tmp_path / "model.safetensors"))
    reader = shards._Reader(tmp_path)
    value = torch.empty(64)
    reader.read_into("b", value)
    assert torch.equal(value, torch.arange(64, dtype=torch.float32))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-10])
    with pytest.raises(WorkbenchError, match="model.safetensors ends inside 'b'"):
        shards._Reader(tmp_path).read_into("b", value)


def test_a_shard_that_is_not_safetensors_is_one_line(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00\xff\xfe not json at all")
    with pytest.raises(WorkbenchError, match="model.safetensors is not a readable safetensors file"):
        shards.checkpoint_files(tmp_path)
