"""Ask the models (on the Samples page): a prompt box that answers with one or two picked runs' final models.

A run's model loads on demand through the library (`workbench.evaluate.harness.load_target`: the run's
`final_dir`, or its `model` artifact when that folder is gone) and only one stays in memory
(st.cache_resource, max_entries=1), so asking two runs loads one after the other. Each answer is greedy, with the
model's chat template and the generation prompt - the same function (`greedy_completions`) that wrote the
run's samples.jsonl - and the page shows how long loading and generating took.
"""

import time

import pandas as pd
import streamlit as st

# On CPU, generation runs on one thread. Measured on this project's 2-core machine while other jobs kept it busy
# (load average ~5.6), the embedded model trained by `legal` for 60 steps, 64 new tokens, 3 repeats: one thread
# 0.63-0.70 s; two threads 4.0-25 s (each op waits for a thread whose core another process holds). A dashboard
# often shares its machine with a fine-tune, so one thread is the safe choice.
CPU_THREADS = 1
CPU_NOTE = ("On a CPU the embedded ~9M-parameter model loads in about 4 s the first time (the libraries load "
            "too) and in 0.2 to 1.5 s after that, and writes 64 new tokens in about 0.7 s (one thread, measured on "
            "a busy 2-core machine). A real model takes far longer on a CPU: run the dashboard on a GPU machine "
            "for those.")


@st.cache_resource(max_entries=1, show_spinner="Loading the run's final model")
def loaded_model(uri: str, run_id: str):
    """(model, tokenizer) of a run's final model; `uri` is part of the cache key (one store per dashboard)."""
    from workbench.evaluate.harness import load_target

    model, tokenizer, _ = load_target(run_id)
    return model, tokenizer


def answer(uri: str, run_id: str, prompt: str, max_new_tokens: int) -> dict:
    """Load (or reuse) the run's model and answer `prompt` as one user turn; with timings and the token count."""
    import torch

    from workbench.evaluate.reward_report import greedy_completions

    start = time.perf_counter()
    model, tokenizer = loaded_model(uri, run_id)
    loaded = time.perf_counter()
    threads = torch.get_num_threads()
    if model.device.type == "cpu":
        torch.set_num_threads(CPU_THREADS)
    try:
        text = greedy_completions(model, tokenizer, [{"prompt": [{"role": "user", "content": prompt}]}], max_new_tokens)[0]
    finally:
        torch.set_num_threads(threads)  # the count belongs to this OS thread: put it back for what runs next
    done = time.perf_counter()
    return {"answer": text, "load_s": loaded - start, "generate_s": done - loaded, "device": str(model.device),
            "tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"])}


def ask_form(picked: pd.DataFrame) -> tuple[str, list[str], int] | None:
    """The prompt box; (prompt, chosen labels, max new tokens) when Generate was pressed with a prompt."""
    with st.form("samples_ask"):
        prompt = st.text_area("Prompt (sent as one user turn through the model's chat template)", key="samples_ask_prompt")
        left, right = st.columns([3, 1])
        chosen = left.multiselect("Runs to ask (one or two)", list(picked["label"]), default=list(picked["label"][:1]),
                                  max_selections=2, key="samples_ask_runs")
        max_new_tokens = right.number_input("Max new tokens", 1, 1024, 64, key="samples_max_tokens")
        pressed = st.form_submit_button("Generate", key="samples_generate")
    if not pressed:
        return None
    if not prompt.strip() or not chosen:
        st.warning("Type a prompt and pick a run to ask.")
        return None
    return prompt, chosen, int(max_new_tokens)


def render(uri: str, picked: pd.DataFrame) -> None:
    from workbench.errors import WorkbenchError

    st.subheader("Ask the models")
    st.caption("Greedy answers from the runs' final models, loaded on demand; one model stays in memory at a "
               "time. " + CPU_NOTE)
    asked = ask_form(picked)
    if asked is not None:
        prompt, chosen, max_new_tokens = asked
        ids = dict(zip(picked["label"], picked["run_id"]))
        results = []
        for label in chosen:
            try:
                results.append({"label": label, **answer(uri, ids[label], prompt, max_new_tokens)})
            except WorkbenchError as err:  # no final model on this machine or in the store: say so, go on
                results.append({"label": label, "error": str(err)})
        st.session_state["samples_asked"] = {"prompt": prompt, "results": results}
    shown = st.session_state.get("samples_asked")
    if not shown:
        return
    for slot, (result, place) in enumerate(zip(shown["results"], st.columns(len(shown["results"])))):
        with place.container(key=f"samples_generated_{slot}"):
            st.markdown(f"**{result['label']}**")
            if "error" in result:
                st.error(result["error"])
                continue
            st.code(result["answer"], language=None, wrap_lines=True)
            rate = result["tokens"] / result["generate_s"] if result["generate_s"] > 0 else float("nan")
            st.caption(f"{result['tokens']} tokens in {result['generate_s']:.2f} s ({rate:.0f} tokens/s) on "
                       f"{result['device']}; loading took {result['load_s']:.2f} s (0 when it was in memory).")
