#!/usr/bin/env python3
"""Build the legal-calc task: find the figure a short legal fact pattern's question asks for.

A verifiable task for reinforcement learning with verifiable rewards (GRPO): each prompt states three figures
of different kinds (a notice period, damages, a filing fee, a number of jurors, ...) in random order and asks
for one of them, or (1 row in 6) for the sum of two small ones. The answer is one integer; a completion earns
the reward when its last line is `#### N` with N equal to the row's `answer`. Every sentence below was written
by the project team for this dataset. The script assembles them deterministically (fixed seeds) into:

    sft.jsonl      800 chat rows teaching the answer format: one sentence naming the figure, then `#### N`
    prompts.jsonl  400 other prompts for RL: {"prompt": [user], "answer": "N", "kind": ...}
    heldout.jsonl  96 prompts in the same format, written from their own sentence pool (see README.md)

and stops unless no held-out row shares a 13-word sequence with sft.jsonl or prompts.jsonl under the project's
own checker (`workbench.contamination`, lm-eval's normalisation), which is why it runs in the project's venv
rather than on the standard library alone as data/legal/build.py does.

Run:  .venv/bin/python data/legal-calc/build.py
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.contamination import check, ngrams, row_text

OUT_DIR = Path(__file__).resolve().parent
TRAIN_SEED, HELDOUT_SEED = 20250301, 20250302  # separate generators: redrawing held-out leaves training as it is
MAX_PROMPT_WORDS, NGRAM = 60, 13
# rows per pick kind and per combination kind: 8 x 84 + 2 x 64 = 800, 8 x 42 + 2 x 32 = 400, 8 x 10 + 2 x 8 = 96
ROWS = {"sft.jsonl": (84, 64), "prompts.jsonl": (42, 32), "heldout.jsonl": (10, 8)}


@dataclass(frozen=True)
class Kind:
    values: tuple[int, ...]
    train: tuple[str, ...]  # fact sentences for sft.jsonl and prompts.jsonl: {n} the figure, {p}/{q} the parties
    heldout: tuple[str, ...]  # fact sentences for heldout.jsonl only: the same figure, worded apart
    questions: tuple[str, ...]  # shared by all files, so the question words a model learns carry over
    answer: str  # the sft.jsonl sentence before `#### N`


@dataclass(frozen=True)
class Combination:
    parts: tuple[tuple[int, int], ...]  # (a, b): the answer is a + b
    excludes: str  # the pick kind a prompt of this kind never also states (it would ask the same thing)
    train: tuple[str, ...]  # one sentence stating both parts: {a}, {b}
    heldout: tuple[str, ...]
    questions: tuple[str, ...]
    answer: str  # {a}, {b}, {s} = a + b


# Every figure is one the embedded tokenizer (`deepseek-v3-tiny`) encodes as ONE token after a space, the same
# token in the prompt as after `#### `: a model copies one token rather than spelling out a number piece by piece.
# Those 1- and 2-digit numbers are 1-10, 12, 14, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90;
# money is stated in thousands or hundreds of dollars to stay among them. test_legal_calc_data.py checks each one.
SINGLE_TOKEN = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90)

KINDS = {
    "notice_days": Kind(
        (7, 10, 14, 15, 20, 25, 30, 45, 60, 90),
        ("The contract required {n} days of notice to end it.",
         "Either side had to give {n} days notice before leaving the deal.",
         "The notice period in the agreement was {n} days.",
         "A party wishing to terminate owed the other {n} days of notice."),
        ("Written notice of termination had to arrive {n} days ahead.",
         "The clause fixed a notice period of {n} days for either side.",
         "Ending the agreement called for notice given {n} days beforehand."),
        ("How many days of notice were required?", "What was the notice period in days?"),
        "The notice period is {n} days."),
    "payment_days": Kind(
        (5, 7, 10, 14, 15, 20, 25, 30, 40, 45),
        ("Each invoice had to be paid within {n} days.",
         "A payment became late once {n} days had passed after billing.",
         "The buyer was allowed {n} days to pay.",
         "Payment fell due {n} days after delivery."),
        ("Bills counted as late if not paid by day {n} after receipt.",
         "The deadline for payment was set at {n} days from the invoice.",
         "{q} had {n} days to pay each bill before it was overdue."),
        ("How many days were allowed for payment?", "What was the payment deadline in days?"),
        "The payment deadline is {n} days."),
    "damages": Kind(
        (12, 14, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90),
        ("The jury awarded {n} thousand dollars in damages.",
         "{p} claimed damages of {n} thousand dollars.",
         "The court found damages of {n} thousand dollars.",
         "Damages came to {n} thousand dollars in the end."),
        ("A verdict granting {n} thousand dollars of damages was returned.",
         "The damages sought amounted to {n} thousand dollars, the complaint said.",
         "{p} asked for {n} thousand dollars as damages for the harm."),
        ("How many thousand dollars of damages were there?", "How many thousand dollars were the damages?"),
        "The damages are {n} thousand dollars."),
    "filing_fee": Kind(
        (15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 90),
        ("The filing fee was {n} dollars.",
         "{p} paid a filing fee of {n} dollars.",
         "The clerk charged a fee of {n} dollars to file the claim.",
         "Filing the complaint cost a fee of {n} dollars."),
        ("To open the case, the clerk collected a filing fee of {n} dollars in cash.",
         "A fee of {n} dollars fell due when the papers were lodged.",
         "The court's filing fee stood at {n} dollars that year."),
        ("What was the filing fee in dollars?", "How much was the filing fee?"),
        "The filing fee is {n} dollars."),
    "rent": Kind(
        (5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 25),
        ("The monthly rent was {n} hundred dollars.",
         "{q} paid rent of {n} hundred dollars a month.",
         "The lease set rent at {n} hundred dollars per month.",
         "Rent for the unit was {n} hundred dollars each month."),
        ("Every month the tenant owed {n} hundred dollars in rent.",
         "The rent came to {n} hundred dollars monthly under the lease.",
         "Under the lease, monthly rent stood at {n} hundred dollars, paid on the first."),
        ("How many hundred dollars was the monthly rent?", "How many hundred dollars was the rent each month?"),
        "The monthly rent is {n} hundred dollars."),
    "jurors": Kind(
        (5, 6, 7, 8, 9, 10, 12, 14, 16),
        ("A jury of {n} jurors heard the case.",
         "The trial had {n} jurors.",
         "There were {n} jurors in the box.",
         "The court seated {n} jurors for the trial."),
        ("The jury was made up of {n} jurors chosen from the county.",
         "Once selection ended, {n} jurors were sworn in.",
         "The jury box held {n} jurors from start to finish."),
        ("How many jurors were there?", "How many jurors heard the case?"),
        "There were {n} jurors."),
    "witnesses": Kind(
        (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15),
        ("The trial heard from {n} witnesses.",
         "{p} called {n} witnesses.",
         "There were {n} witnesses at the hearing.",
         "The record lists {n} witnesses who testified."),
        ("Testimony came from {n} witnesses over two days.",
         "The parties put {n} witnesses on the stand.",
         "The court listened to {n} witnesses before ruling."),
        ("How many witnesses testified?", "How many witnesses were heard?"),
        "There were {n} witnesses."),
    "judges": Kind(
        (3, 4, 5, 6, 7, 8, 9, 12, 15),
        ("The appeal was heard by a panel of {n} judges.",
         "A panel of {n} judges heard the appeal.",
         "The appeals court sat {n} judges for the case.",
         "There were {n} judges on the panel."),
        ("The appellate bench for this matter had {n} judges on it.",
         "On appeal, {n} judges reviewed the ruling.",
         "The appeal went before {n} judges of the higher court."),
        ("How many judges were on the panel?", "How many judges heard the appeal?"),
        "The panel had {n} judges."),
}

COMBINATIONS = {
    "damages_total": Combination(  # two items, in thousands of dollars, whose sum is a single token too
        tuple((a, b) for a in SINGLE_TOKEN for b in SINGLE_TOKEN
              if 5 <= a <= 60 and 5 <= b <= 60 and a != b and a + b in SINGLE_TOKEN),
        "damages",
        ("{p} proved repair costs of {a} thousand dollars and lost wages of {b} thousand dollars.",
         "The damages had two parts: {a} thousand dollars for repairs and {b} thousand dollars for lost income.",
         "The court allowed {a} thousand dollars for medical bills and {b} thousand dollars for lost pay."),
        ("Two items of harm were shown: {a} thousand dollars of lost stock and {b} thousand dollars of spoiled goods.",
         "{p} lost {a} thousand dollars in wages and spent {b} thousand dollars fixing the damage."),
        ("How many thousand dollars were the total damages?", "The damages add up to how many thousand dollars?"),
        "The total damages are {a} + {b} = {s} thousand dollars."),
    "judges_total": Combination(  # votes one way, then the other: a > b, and a + b a panel size above
        tuple((a, b) for a in SINGLE_TOKEN for b in SINGLE_TOKEN if a > b and a + b in (3, 4, 5, 6, 7, 8, 9, 12, 15)),
        "judges",
        ("On appeal, {a} judges voted to affirm and {b} voted to reverse.",
         "The appeals court split {a} to {b} in favor of {p}.",
         "In the appeal, {a} judges joined the majority and {b} dissented."),
        ("The appellate ruling passed with {a} votes for and {b} against.",
         "Of the judges on appeal, {a} sided with {p} and {b} with {q}."),
        ("How many judges sat in all?", "How many judges voted in total?"),
        "In all {a} + {b} = {s} judges sat."),
}

INTROS = {
    "train": ("{p} sued {q} over a contract.", "In {p} v. {q}, the court noted these facts.",
              "{p} brought a claim against {q}.", "A dispute between {p} and {q} went to court.",
              "{q} was sued by {p} for breach.", "The case of {p} v. {q} turned on a few figures.",
              "{p} took {q} to court.", "Here are the facts of {p} v. {q}."),
    "heldout": ("{p} filed suit against {q}.", "Consider the matter of {p} against {q}.",
                "{p} and {q} could not settle their quarrel.", "A record from {p} v. {q} shows the following.",
                "Litigation arose between {p} and {q}."),
}

NAMES = ("Reyes", "Holt", "Park", "Okafor", "Lindqvist", "Moreau", "Chen", "Baker", "Novak", "Singh", "Ferreira",
         "Walsh", "Tanaka", "Brennan", "Kowalski", "Adeyemi", "Larsen", "Duarte", "Ibrahim", "Quinn", "Sato",
         "Mendes", "Fischer", "Grant", "Haddad", "Ortiz", "Petrov", "Rossi", "Shah", "Vance", "Yilmaz", "Abbott",
         "Castillo", "Delgado", "Eriksen", "Foster", "Gupta", "Hughes", "Kaur", "Mwangi")


@dataclass(frozen=True)
class Draft:
    prompt: str
    answer: int
    kind: str
    sentence: str  # the sft answer sentence


def pick_draft(rng: random.Random, kind: str, position: int, pool: str) -> Draft:
    """Three facts of different kinds, the asked one at `position`, and a question for it."""
    others = rng.sample([k for k in KINDS if k != kind], 2)
    kinds = others[:position] + [kind] + others[position:]
    values = [rng.choice(KINDS[k].values) for k in kinds]
    while len(set(values)) < 3:  # distinct figures: copying the wrong one never scores by luck
        values = [rng.choice(KINDS[k].values) for k in kinds]
    p, q = rng.sample(NAMES, 2)
    facts = [rng.choice(getattr(KINDS[k], pool)).format(n=v, p=p, q=q) for k, v in zip(kinds, values)]
    prompt = " ".join([rng.choice(INTROS[pool]).format(p=p, q=q), *facts, rng.choice(KINDS[kind].questions)])
    answer = values[position]
    return Draft(prompt, answer, kind, KINDS[kind].answer.format(n=answer))


def combination_draft(rng: random.Random, kind: str, position: int, pool: str) -> Draft:
    """One sentence stating two parts, one fact of another kind (first or second), and a question for the sum."""
    combo = COMBINATIONS[kind]
    other = rng.choice([k for k in KINDS if k != combo.excludes])
    (a, b), value = rng.choice(combo.parts), rng.choice(KINDS[other].values)
    while len({a, b, a + b, value}) < 4:  # nor may the sum itself stand in the prompt
        (a, b), value = rng.choice(combo.parts), rng.choice(KINDS[other].values)
    p, q = rng.sample(NAMES, 2)
    parts = rng.choice(getattr(combo, pool)).format(a=a, b=b, p=p, q=q)
    fact = rng.choice(getattr(KINDS[other], pool)).format(n=value, p=p, q=q)
    facts = [parts, fact] if position == 0 else [fact, parts]
    prompt = " ".join([rng.choice(INTROS[pool]).format(p=p, q=q), *facts, rng.choice(combo.questions)])
    return Draft(prompt, a + b, kind, combo.answer.format(a=a, b=b, s=a + b))


def draft(rng: random.Random, spec: tuple[str, int], pool: str) -> Draft:
    kind, position = spec
    return (pick_draft if kind in KINDS else combination_draft)(rng, kind, position, pool)


def specs(rng: random.Random, per_pick: int, per_combination: int) -> list[tuple[str, int]]:
    """(kind, position of the asked fact) for one file: kinds balanced, positions cycled, order shuffled."""
    rows = [(k, i % 3) for k in KINDS for i in range(per_pick)]
    rows += [(k, i % 2) for k in COMBINATIONS for i in range(per_combination)]
    rng.shuffle(rows)
    return rows


def prompt_key(prompt: str) -> str:
    """A prompt as the checker reads it (lowercase, punctuation deleted): near-identical prompts count as one."""
    return " ".join(ngrams(prompt, 1))


def sft_row(d: Draft) -> dict:
    return {"messages": [{"role": "user", "content": d.prompt},
                         {"role": "assistant", "content": f"{d.sentence}\n#### {d.answer}"}]}


def rl_row(d: Draft) -> dict:
    return {"prompt": [{"role": "user", "content": d.prompt}], "answer": str(d.answer), "kind": d.kind}


def build_training(seen: set[str]) -> tuple[list[dict], list[dict]]:
    """sft.jsonl and prompts.jsonl from one generator; no prompt repeats within or across them."""
    rng = random.Random(TRAIN_SEED)
    files = []
    for name, make_row in (("sft.jsonl", sft_row), ("prompts.jsonl", rl_row)):
        rows = []
        for spec in specs(rng, *ROWS[name]):
            d = draft(rng, spec, "train")
            while prompt_key(d.prompt) in seen:
                d = draft(rng, spec, "train")
            seen.add(prompt_key(d.prompt))
            rows.append(make_row(d))
        files.append(rows)
    return files[0], files[1]


def build_heldout(training: list[dict], seen: set[str]) -> tuple[list[dict], int]:
    """heldout.jsonl from the held-out pool; a candidate sharing a 13-gram with training is dropped and redrawn."""
    rng = random.Random(HELDOUT_SEED)
    train_grams = {g for row in training for g in ngrams(row_text(row), NGRAM)}
    rows, dropped = [], 0
    for spec in specs(rng, *ROWS["heldout.jsonl"]):
        while True:
            row = rl_row(d := draft(rng, spec, "heldout"))
            if prompt_key(d.prompt) in seen:
                continue
            if any(g in train_grams for g in ngrams(row_text(row), NGRAM)):
                dropped += 1
                continue
            break
        seen.add(prompt_key(d.prompt))
        rows.append(row)
    return rows, dropped


def check_prompt(prompt: str) -> None:
    """Short, and every figure plain digits after a space (so it tokenizes as it does after `#### `)."""
    if len(prompt.split()) > MAX_PROMPT_WORDS:
        raise SystemExit(f"prompt over {MAX_PROMPT_WORDS} words: {prompt!r}")
    if len(re.findall(r"\d+", prompt)) != 3 or len(re.findall(r"(?<= )\d+(?=[ .,])", prompt)) != 3:
        raise SystemExit(f"prompt must state 3 figures, each after a space: {prompt!r}")


def sentence_tail(template: str) -> str:
    """A fact sentence's last two words as the checker reads them, figures as N and parties as P."""
    return " ".join(list(ngrams(re.sub(r"\{[nab]\}", "N", re.sub(r"\{[pq]\}", "P", template)), 1))[-2:])


def check_sentence_tails() -> None:
    """No held-out fact sentence ends in the two words a training one ends in. The questions are the only
    sentences all files share, so a held-out row's longest run of words shared with training is then at most
    one word of a tail, a question, the answer and the kind: under 13 by design, before any candidate is drawn."""
    blocks = [*KINDS.values(), *COMBINATIONS.values()]
    train_tails = {sentence_tail(t) for b in blocks for t in b.train}
    clashes = [t for b in blocks for t in b.heldout if sentence_tail(t) in train_tails]
    if clashes:
        raise SystemExit(f"held-out sentence ends as a training one does: {clashes[0]!r}")
    longest = max(len(q.split()) for b in blocks for q in b.questions)
    if 1 + longest + 2 >= NGRAM:
        raise SystemExit(f"a {longest}-word question leaves no margin under the {NGRAM}-gram rule")


def build() -> tuple[dict[str, list[dict]], int]:
    """The three files' rows, and how many held-out candidates were dropped for sharing a 13-gram."""
    check_sentence_tails()
    seen: set[str] = set()
    sft, prompts = build_training(seen)
    heldout, dropped = build_heldout(sft + prompts, seen)
    for row in sft:
        check_prompt(row["messages"][0]["content"])
    for row in prompts + heldout:
        check_prompt(row["prompt"][0]["content"])
    return {"sft.jsonl": sft, "prompts.jsonl": prompts, "heldout.jsonl": heldout}, dropped


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)


def main() -> None:
    files, dropped = build()
    for name, rows in files.items():
        (OUT_DIR / name).write_text(jsonl(rows), encoding="ascii", newline="\n")
    report = check([OUT_DIR / "sft.jsonl", OUT_DIR / "prompts.jsonl"], [OUT_DIR / "heldout.jsonl"], n=NGRAM)
    if not report.clean:
        raise SystemExit(f"heldout.jsonl overlaps the training files: {report.overlaps[0]}")
    print(" ".join(f"{name}={len(rows)}" for name, rows in files.items()),
          f"held-out candidates dropped for a shared {NGRAM}-gram: {dropped}")


if __name__ == "__main__":
    main()
