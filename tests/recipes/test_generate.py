"""`workbench generate` and `workbench chat` (workbench/model/generate.py): what the model says, streamed.

    .venv/bin/python -m pytest -q tests/recipes/test_generate.py

Every expected answer is computed here with a plain `model.generate` on the chat template's ids, independently of
the workbench's streaming path. The chat is driven through a real terminal (pexpect), as a person types.
"""

import copy
import io
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench.cli import main
from workbench.model.generate import HELP, Sampling, Target, load_target, reply
from workbench.paths import project_root

QUESTION = "What is a tort?"
FOLLOW_UP = "Can a contract be oral?"
TOKENS = 8
WORKBENCH = str(Path(sys.executable).parent / "workbench")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # readline's terminal codes (bracketed paste), not the model's text


def greedy(model, tokenizer, messages, tokens=TOKENS, template=True) -> str:
    """The reference answer: plain greedy `generate` on the chat template (or plain text), decoded at once."""
    if template:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
    else:
        ids = tokenizer("\n".join(m["content"] for m in messages), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def ask(messages_or_question) -> list[dict]:
    return [{"role": "user", "content": messages_or_question}]


def generated(capsys, *args) -> str:
    """stdout of an in-process `workbench generate ...`, which must succeed without a library's warning showing."""
    code = main(["generate", *args])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "", captured.err
    return captured.out


def test_generate_streams_the_greedy_answer_of_the_chat_template(tiny, capsys):
    model, tokenizer = tiny
    expected = greedy(model, tokenizer, ask(QUESTION))
    assert expected != greedy(model, tokenizer, ask(QUESTION), template=False)  # the template makes a difference
    assert generated(capsys, "deepseek-v3-tiny", QUESTION, "--max-new-tokens", str(TOKENS)) == expected + "\n"


def test_the_answer_is_written_piece_by_piece_while_the_model_decodes(tiny):
    model, tokenizer = tiny
    forwards, seen = [0], []
    hook = model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))

    class Screen(io.StringIO):
        def write(self, text):
            seen.append((text, forwards[0]))  # what arrived, and how many decoding steps had run by then
            return super().write(text)

    try:
        text = reply(Target(model, tokenizer, "tiny"), ask(QUESTION), Sampling(max_new_tokens=24), out=Screen())
    finally:
        hook.remove()
    assert text == "".join(piece for piece, _ in seen) == greedy(model, tokenizer, ask(QUESTION), tokens=24)
    assert len(seen) >= 3 and seen[0][1] < forwards[0] / 2, (seen, forwards)  # early pieces came early


def test_seed_repeats_samples_and_top_p_narrows_them(tiny, capsys):
    model, tokenizer = tiny
    sample = ["deepseek-v3-tiny", QUESTION, "--max-new-tokens", "6", "--temperature", "1.0"]
    first = generated(capsys, *sample, "--seed", "7")
    assert generated(capsys, *sample, "--seed", "7") == first
    assert generated(capsys, *sample, "--seed", "8") != first
    nucleus_of_one = generated(capsys, *sample, "--seed", "7", "--top-p", "1e-6")  # only the likeliest token left
    assert nucleus_of_one == greedy(model, tokenizer, ask(QUESTION), tokens=6) + "\n" != first


def test_a_tokenizer_without_chat_template_gets_plain_text_said_once(tiny):
    model, tokenizer = tiny
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    notes = io.StringIO()
    target = Target(model, plain, "tiny without template", notes=notes)
    for _ in range(2):
        answer = reply(target, ask(QUESTION), Sampling(max_new_tokens=TOKENS), out=io.StringIO())
        assert answer == greedy(model, tokenizer, ask(QUESTION), template=False)
    assert notes.getvalue() == "note: this tokenizer has no chat template: the conversation goes in as plain text\n"


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_lora_run_answers_from_its_adapter_over_the_base_unmerged(train_recipe, isolated, tiny, capsys,
                                                                   monkeypatch):
    from peft import PeftModel

    from workbench.model.load import load_final

    run, client = train_recipe("legal", ["train.max_steps=2", "data.max_rows=16", "eval.suite=null"])
    run_id = run.tracker.run_id
    final = Path(client.get_run(run_id).data.tags["final_dir"])
    merged, tokenizer = load_final(final, with_mtp=False)
    expected = greedy(merged.eval(), tokenizer, ask(QUESTION))
    assert expected != greedy(tiny[0], tiny[1], ask(QUESTION))  # the adapter changes the answer
    monkeypatch.setenv("MLFLOW_TRACKING_URI", isolated["uri"])
    capsys.readouterr()  # the training's own display
    before = files_under(isolated["tmp"])
    for ref in (run_id, "legal"):  # the run id, and its experiment's newest finished run
        assert generated(capsys, ref, QUESTION, "--max-new-tokens", str(TOKENS)) == expected + "\n", ref
    assert files_under(isolated["tmp"]) == before  # no merged copy written anywhere
    target = load_target("legal")
    assert isinstance(target.model, PeftModel), type(target.model)
    assert target.label.startswith(f"legal (run {run_id[:8]}), LoRA adapter over deepseek-v3-tiny (not merged) on ")
    assert any("lora_A" in name for name, _ in target.model.named_modules())  # the adapter stays separate


def test_mtp_decodes_the_same_greedy_text_with_drafts(capsys):
    from workbench.model import speculative

    args = ["deepseek-v3-tiny-mtp", QUESTION, "--max-new-tokens", str(TOKENS)]
    plain = generated(capsys, *args)
    stats = {"forwards": 0, "proposed": 0, "accepted": 0}
    with speculative._count_drafts(stats):
        assert generated(capsys, *args, "--mtp") == plain
    assert stats["proposed"] > 0, stats  # the MTP layer drafted: the flag did something


@pytest.fixture(scope="module")
def unfinished_legal_store(tmp_path_factory):
    """A tracking store holding an experiment `legal` with one run that never finished (built once)."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_run(client.create_experiment("legal"))
    return uri


BAD_INPUT = [
    (["generate", "deepseek-v3-tiny", ""], "error: generate: the prompt is empty"),
    (["generate", "deepseek-v3-tiny", " \t "], "error: generate: the prompt is empty"),
    (["generate", "deepseek-v3-tiny", "hi", "--temperature", "-0.5"],
     "generate: --temperature must be >= 0 (0 = greedy), got -0.5"),
    (["chat", "deepseek-v3-tiny", "--temperature", "nan"], "chat: --temperature must be >= 0 (0 = greedy), got nan"),
    (["generate", "deepseek-v3-tiny", "hi", "--top-p", "0"], "generate: --top-p must be in (0, 1], got 0"),
    (["chat", "deepseek-v3-tiny", "--top-p", "1.5"], "chat: --top-p must be in (0, 1], got 1.5"),
    (["generate", "deepseek-v3-tiny", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be > 0, got 0"),
    (["chat", "deepseek-v3-tiny", "--max-new-tokens", "-3"], "chat: --max-new-tokens must be > 0, got -3"),
    (["generate", "deepseek-v3-tiny", "hi", "--mtp"],
     "generate --mtp: 'deepseek-v3-tiny' has no multi-token-prediction layer to draft with"),
    (["generate", "no-such-model", "hi"], "generate target 'no-such-model': not a preset (deepseek-v3-tiny"),
    (["chat", "0123456789abcdef0123456789abcdef"], "chat target '0123456789abcdef0123456789abcdef': no run with id"),
    (["generate", "legal", "hi"], "generate target 'legal': no finished run in experiment 'legal'"),
    (["generate", "", "hi"], "generate target '': empty"),
]


@pytest.mark.parametrize("args, expected", BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_is_one_line(args, expected, unfinished_legal_store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", unfinished_legal_store)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


def spawn_chat(*flags, target="deepseek-v3-tiny"):
    import pexpect

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # as a person's shell has it
    env.update(HF_HUB_OFFLINE="1", TERM="xterm-256color")
    child = pexpect.spawn(WORKBENCH, ["chat", str(target), *flags], cwd=str(project_root()), env=env,
                          encoding="utf-8", timeout=180, dimensions=(50, 400))
    child.expect_exact("\r\n> ")  # after the model loaded and the first line named it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert child.before == f"{target} on {device}. {HELP}", child.before  # no library warnings, no bars
    return child


def _endless_model(tmp_path) -> Path:
    """The tiny preset with no end-of-sequence token: an answer runs to --max-new-tokens, so it cannot end on its own
    before the Ctrl-C lands."""
    import json
    import shutil

    from workbench.model.presets import preset_dir

    folder = tmp_path / "endless"
    shutil.copytree(preset_dir("deepseek-v3-tiny", 0), folder)
    for name in ("generation_config.json", "config.json"):
        config = json.loads((folder / name).read_text())
        config["eos_token_id"] = None
        (folder / name).write_text(json.dumps(config))
    return folder


def say(child, line: str) -> str:
    """Type a line; the answer is what the terminal shows after the echoed line, before the next prompt."""
    child.sendline(line)
    child.expect_exact("\r\n> ")
    shown = ANSI.sub("", child.before).replace("\r\n", "\n")
    echoed, _, answer = shown.partition("\n")
    assert echoed == line, shown
    return answer


def test_chat_in_a_terminal_keeps_the_conversation_resets_and_leaves_on_ctrl_d(tiny):
    model, tokenizer = tiny
    first = greedy(model, tokenizer, ask(QUESTION))
    follow_up = greedy(model, tokenizer, ask(QUESTION) + [{"role": "assistant", "content": first}] + ask(FOLLOW_UP))
    fresh = greedy(model, tokenizer, ask(FOLLOW_UP))
    assert follow_up != fresh and "> " not in first + follow_up + fresh  # the history matters; no prompt look-alike

    child = spawn_chat("--max-new-tokens", str(TOKENS))
    assert say(child, QUESTION) == first
    assert say(child, FOLLOW_UP) == follow_up  # answered with the first turn in the conversation
    assert say(child, "/reset") == "(conversation cleared)"
    assert say(child, FOLLOW_UP) == fresh
    child.sendeof()
    child.expect_exact("bye")
    child.expect(__import__("pexpect").EOF)
    child.close()
    assert child.exitstatus == 0 and child.signalstatus is None


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_stops_the_answer_not_the_chat(tmp_path, inherited):
    """Also where the chat was started with SIGINT ignored, as a shell's background job starts its commands (CI
    running `make test` in the background did: the answer ran to its end and the chat said nothing)."""
    import pexpect
    import signal

    before = signal.signal(signal.SIGINT, signal.SIG_IGN if inherited == "ignored" else signal.SIG_DFL)
    try:  # the child inherits the disposition when it is spawned
        child = spawn_chat("--max-new-tokens", "2000", target=_endless_model(tmp_path))  # minutes of decoding on a CPU
    finally:
        signal.signal(signal.SIGINT, before)
    child.sendline(QUESTION)
    child.expect_exact(QUESTION + "\r\n")
    child.expect(r"\S", timeout=60)  # the first piece of the answer is on the screen while the model still decodes
    start = time.perf_counter()
    child.sendintr()
    child.expect_exact(" (stopped)\r\n> ")
    assert time.perf_counter() - start < 30
    child.sendline("/exit")
    child.expect_exact("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
