"""Length-grouped batches served in a random order (sft.LengthGroupedBatches) instead of longest to shortest."""

import copy
import random

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from workbench.recipe.load import load_recipe
from workbench.data.load import load_dataset
from workbench.train.methods import sft

BATCH = 8


def _lengths(n=1003, seed=0):
    rng = random.Random(seed)
    return [rng.randint(10, 500) for _ in range(n)]


def _batches(sampler, seed):
    sampler.generator = torch.Generator().manual_seed(seed)
    order = list(sampler)
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def test_same_batches_as_transformers_in_a_random_order():
    lengths = _lengths()
    stock = _batches(LengthGroupedSampler(BATCH, lengths=lengths), seed=3)
    ours = _batches(sft.LengthGroupedBatches(BATCH, lengths=lengths), seed=3)

    assert sorted(i for b in ours for i in b) == list(range(len(lengths)))  # every row once
    assert sorted(map(sorted, ours)) == sorted(map(sorted, stock))  # the very same length-grouped batches
    assert ours[0] == stock[0] and max(lengths) in [lengths[i] for i in ours[0]]  # the longest row comes first
    assert ours[-1] == stock[-1] and len(ours[-1]) == len(lengths) % BATCH  # the short last batch stays last

    # transformers: within a mega-batch (here 1003 // (8 * 4) = 31 batches) each batch is no longer than the last;
    # here the batch maxima go up about as often as down.
    def rises(batches):
        maxima = [max(lengths[i] for i in b) for b in batches[1:31]]
        return sum(b > a for a, b in zip(maxima, maxima[1:]))

    assert rises(stock) == 0
    assert rises(ours) >= 8


def test_order_follows_the_generator():
    sampler = sft.LengthGroupedBatches(BATCH, lengths=_lengths())
    assert _batches(sampler, seed=1) == _batches(sampler, seed=1)  # resumable: same seed, same order
    assert _batches(sampler, seed=1) != _batches(sampler, seed=2)


def test_sft_trainer_serves_length_grouped_batches_in_random_order(tiny, tmp_path):
    model, tokenizer = tiny
    splits = load_dataset(load_recipe("legal", ["data.max_rows=64"]).data, "sft")

    def sampler(group_by_length):
        recipe = load_recipe("legal", ["data.max_rows=64", "eval.suite=null", f"train.group_by_length={group_by_length}"])
        trainer = sft.build_trainer(recipe, copy.deepcopy(model), tokenizer, splits, str(tmp_path), callbacks=[])
        return trainer._get_train_sampler()

    grouped = sampler("true")
    assert type(grouped) is sft.LengthGroupedBatches
    assert grouped.batch_size == 8 and len(grouped.lengths) == len(splits.train)
    assert not isinstance(sampler("false"), LengthGroupedSampler)
