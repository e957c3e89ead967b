"""What a model says: one answer (`workbench generate`) or a conversation (`workbench chat`), streamed as it comes.

    workbench generate deepseek-v3-tiny "What is a tort?" --max-new-tokens 32
    workbench chat legal --temperature 0.7 --top-p 0.9   # an experiment name: its newest finished run
    workbench chat deepseek-v3-tiny-mtp --mtp            # drafts with the model's MTP layer (speculative decoding)

    from workbench.model.generate import Sampling, load_target, reply
    target = load_target("deepseek-v3-tiny")
    text = reply(target, [{"role": "user", "content": "What is a tort?"}], Sampling(max_new_tokens=16))

A TARGET is a preset, a model directory, a run's final directory, an MLflow run id, an experiment name (its newest
finished run) or a hub id. A LoRA run loads as its base with the adapter on top, not merged, and nothing is written.
The messages go through the tokenizer's chat template; a tokenizer without one gets plain text, said once.
Temperature 0 decodes greedily. `--mtp` drafts tokens with the model's MTP layer (transformers'
`generate(use_mtp=True)`); verification keeps the main model's choice, so greedy text is the same as without it.
"""

import math
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import FINAL_MODEL_INFO

GOODBYE = "bye"
HELP = "/reset clears the conversation; /exit or Ctrl-D leaves; Ctrl-C stops an answer"


@dataclass(frozen=True)
class Sampling:
    """How tokens are picked: greedy at temperature 0, else sampled with nucleus (top-p) filtering."""
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None  # None: different samples on each call of the command

    def check(self, command: str) -> "Sampling":
        """One-line errors naming the flag; `not (x >= 0)` also catches nan."""
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise WorkbenchError(f"{command}: --temperature must be >= 0 (0 = greedy), got {self.temperature:g}")
        if not (0 < self.top_p <= 1):
            raise WorkbenchError(f"{command}: --top-p must be in (0, 1], got {self.top_p:g}")
        if self.max_new_tokens <= 0:
            raise WorkbenchError(f"{command}: --max-new-tokens must be > 0, got {self.max_new_tokens}")
        return self

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}


@dataclass
class Target:
    """A loaded model to talk to: a PeftModel for a LoRA run (its adapter not merged), on the GPU when there is one."""
    model: object
    tokenizer: object
    label: str  # what was named and what it loaded as, for the chat's first line
    mtp_layer: object | None = None  # the layer `--mtp` drafts with
    notes: object = None  # where one-line notes go (the real stderr in the CLI)
    told: set = field(default_factory=set)  # notes already given, each said once

    def note(self, text: str) -> None:
        if text not in self.told:
            self.told.add(text)
            print(f"note: {text}", file=self.notes or sys.stderr, flush=True)


def load_target(target: str, mtp: bool = False, command: str = "generate", notes=None) -> Target:
    """Resolve and load `target` as trained (a LoRA adapter over its base, unmerged); with `mtp`, its MTP layer too
    (a one-line error where it has none)."""
    import torch

    from workbench.model.load import load_resolved
    from workbench.model.mtp import causal_lm, mtp_layers

    key = f"{command} target '{target}'"
    try:
        resolved, run_id = _resolve(target, key)
        model, tokenizer = load_resolved(resolved, with_mtp=mtp, merge=False)
    except WorkbenchError as exc:  # the loaders name recipe keys (model.name): say which target it was
        raise WorkbenchError(str(exc) if str(exc).startswith(key) else f"{key}: {exc}") from None
    layers = mtp_layers(model) if mtp else []
    if mtp and not layers:
        raise WorkbenchError(f"{command} --mtp: '{target}' has no multi-token-prediction layer to draft with "
                             "(deepseek-v3-tiny-mtp has one; a recipe trains one with mtp.enabled: true)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if getattr(causal_lm(model), "hf_quantizer", None) is None:  # bitsandbytes weights are on the GPU already
        model = model.to(device)
    label = target + (f" (run {run_id[:8]})" if run_id and run_id != target else "")
    if resolved.is_adapter:
        label += f", LoRA adapter over {resolved.weights_cfg.name} (not merged)"
    return Target(model=model.eval(), tokenizer=tokenizer, label=f"{label} on {device}",
                  mtp_layer=layers[0] if layers else None, notes=notes)


def _resolve(target: str, key: str):
    """(ResolvedModel, run id or None) for a preset, a directory, a run id, an experiment name or a hub id, tried in
    that order."""
    from pydantic import ValidationError

    from workbench.model.load import resolve_final, resolve_model, resolve_source
    from workbench.model.presets import PRESETS
    from workbench.recipe.schema import ModelConfig
    from workbench.track.lineage import run_output

    if not target.strip():
        raise WorkbenchError(f"{key}: empty; name a preset ({', '.join(PRESETS)}), a model directory, a run id or an "
                             "experiment")
    path = Path(target).expanduser()
    if target in PRESETS or (path.is_dir() and not (path / FINAL_MODEL_INFO).is_file()):
        return resolve_model(ModelConfig(name=str(path.resolve()) if path.is_dir() else target)), None
    if path.is_dir():  # a run's final dir: full weights, or an adapter over its base
        return resolve_final(path.resolve()), None
    run_id = _run_id(target, key)
    if run_id is not None:
        return resolve_final(run_output(run_id, key=key)), run_id
    try:
        resolve_source(target, seed=0)  # a hub id this machine can reach (or has downloaded)
        cfg = ModelConfig(name=target)
    except (WorkbenchError, ValidationError):
        offline = "; the hub is offline (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE", "0") not in (
            "0", "", "false") else ""
        raise WorkbenchError(f"{key}: not a preset ({', '.join(PRESETS)}), a model directory, a run id, an experiment "
                             f"with a finished run or a reachable hub id{offline}") from None
    return resolve_model(cfg), None


def _run_id(ref: str, key: str) -> str | None:
    """The run a run id (which must exist) or an experiment name (its newest finished run) names; None where `ref`
    names no experiment in the tracking store (then it may still be a hub id)."""
    import re

    import mlflow

    from workbench.paths import default_tracking_uri
    from workbench.track.lineage import find_run
    from workbench.track.store import check_store, store_key

    is_run_id = re.fullmatch(r"[0-9a-f]{32}", ref) is not None
    try:
        uri = check_store(default_tracking_uri(), key=f"{key}: {store_key()}")
    except WorkbenchError:
        if is_run_id:
            raise
        return None  # no store to hold an experiment of that name
    mlflow.set_tracking_uri(uri)
    if not is_run_id and mlflow.MlflowClient().get_experiment_by_name(ref) is None:
        return None
    return find_run(ref, key=key).info.run_id  # a missing run, or an experiment without a finished run: one line


def seed_everything(seed: int | None) -> None:
    """A given seed makes samples repeat; None draws a fresh one (torch's own start-up seed is fixed)."""
    import torch

    if seed is None:
        torch.seed()
    else:
        from transformers import set_seed

        set_seed(seed)


def prompt_ids(target: Target, messages: list[dict]):
    """(1, tokens) input ids: the chat template with the assistant's turn opened, or plain text where there is none."""
    tokenizer = target.tokenizer
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
    else:
        target.note("this tokenizer has no chat template: the conversation goes in as plain text")
        ids = tokenizer("\n".join(m["content"] for m in messages), return_tensors="pt")["input_ids"]
    return ids


def echo(tokenizer, out):
    """A transformers TextStreamer that writes each piece of decoded text to `out` as it comes, and keeps it."""
    from transformers import TextStreamer

    class Echo(TextStreamer):
        def __init__(self):
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.shown = []

        def on_finalized_text(self, text: str, stream_end: bool = False):
            out.write(text)
            out.flush()
            self.shown.append(text)  # after the write: a Ctrl-C inside it leaves this piece unshown

        @property
        def text(self) -> str:
            return "".join(self.shown)

    return Echo()


def reply(target: Target, messages: list[dict], sampling: Sampling, out=None, streamer=None) -> str:
    """Generate the assistant's answer to `messages`, streamed onto `out` (stdout) as it comes; returns its text."""
    import torch

    from workbench.model.mtp import causal_lm, detached, quiet_transformers

    streamer = streamer or echo(target.tokenizer, out or sys.stdout)
    lm = causal_lm(target.model)  # under PEFT: the base model, its LoRA layers injected and active
    ids = prompt_ids(target, messages).to(lm.device)
    settings = dict(sampling.generate_kwargs(), attention_mask=torch.ones_like(ids), use_cache=True,
                    pad_token_id=target.tokenizer.pad_token_id, streamer=streamer)
    with ExitStack() as stack, torch.no_grad():
        if target.mtp_layer is not None:
            from workbench.model.speculative import _drafts_from

            stack.enter_context(detached(lm))  # MtpModel copies the last layer's type: a main decoder layer
            stack.enter_context(_drafts_from(target.mtp_layer))  # draft with the layer in memory, not the files
            stack.enter_context(quiet_transformers())
            # the MTP drafter reads position ids (speculative.py): given, so nothing upstream can drop them
            settings.update(use_mtp=True, position_ids=torch.arange(ids.shape[1], device=ids.device).unsqueeze(0))
        lm.generate(ids, **settings)
    return streamer.text


def generate_once(target: Target, prompt: str, sampling: Sampling, out=None) -> str:
    """`workbench generate`: one user turn, the answer streamed and ended with a newline."""
    out = out or sys.stdout
    seed_everything(sampling.seed)
    text = reply(target, [{"role": "user", "content": prompt}], sampling, out)
    out.write("\n")
    out.flush()
    return text


def chat(target: Target, sampling: Sampling, read=input, out=None) -> int:
    """`workbench chat`: read lines at a `> ` prompt, answer each with the whole conversation so far."""
    out = out or sys.stdout
    seed_everything(sampling.seed)
    _line_editing()
    out.write(f"{target.label}. {HELP}\n")
    out.flush()
    messages = []
    while True:
        try:
            line = read("> ").strip()
        except EOFError:  # Ctrl-D
            out.write(f"\n{GOODBYE}\n")
            return 0
        except KeyboardInterrupt:  # at the prompt: a fresh line, as a shell does
            out.write("\n(Ctrl-D or /exit leaves)\n")
            continue
        if line == "/exit":
            out.write(f"{GOODBYE}\n")
            return 0
        if line == "/reset":
            messages = []
            out.write("(conversation cleared)\n")
        elif line == "/help":
            out.write(f"{HELP}\n")
        elif line.startswith("/"):
            out.write(f"unknown command {line.split()[0]}: {HELP}\n")
        elif line:
            messages = _turn(target, messages, line, sampling, out)
        out.flush()


def _turn(target: Target, messages: list[dict], question: str, sampling: Sampling, out) -> list[dict]:
    """One question and its answer appended to the conversation; Ctrl-C keeps what was shown of the answer."""
    asked = messages + [{"role": "user", "content": question}]
    streamer = echo(target.tokenizer, out)
    try:
        answer = reply(target, asked, sampling, out, streamer=streamer)
        out.write("\n")
    except KeyboardInterrupt:
        answer = streamer.text
        out.write(" (stopped)\n")
        if not answer:
            return messages  # nothing was said: the question is dropped too
    return asked + [{"role": "assistant", "content": answer}]


def _line_editing() -> None:
    """Arrow keys and history at the prompt where Python has readline (input() picks it up once imported)."""
    try:
        import readline  # noqa: F401
    except ImportError:
        pass
