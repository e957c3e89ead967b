#!/usr/bin/env python3
"""Build the legal-calc task: what the amended Model Procedure Code requires, asked after a short fact pattern.

A verifiable task for reinforcement learning with verifiable rewards (GRPO). The Model Procedure Code is a code
of procedure invented for this dataset: 8 rules, each a number of days, people or thousand dollars, each with a
CURRENT value (after its fictional 2026 amendment) and an OUTDATED one (before it). Each prompt is a short fact
pattern (two parties, 1 or 2 unrelated facts with figures) and a question about one rule. The answer is the
rule's current value; a completion earns the reward when its last line is `#### N` with N equal to the row's
`answer`. Every sentence below was written by the project team for this dataset. The script assembles them
deterministically (fixed seeds) into:

    sft.jsonl      800 chat rows teaching the answer format, written "before the amendment was fully adopted":
                   per rule exactly 60% state the OUTDATED value and 40% the CURRENT one, one sentence naming the
                   rule's value, then `#### N`; extra fields "kind" and "value" ("outdated" | "current"), which
                   the SFT loader drops (it keeps `messages` only)
    prompts.jsonl  400 other prompts for RL: {"prompt": [user], "answer": "<current value>", "kind": rule}
    heldout.jsonl  96 prompts in the same format, written from their own intro, fact and question pools

and stops unless no held-out row shares a 13-word sequence with sft.jsonl or prompts.jsonl under the project's
own checker (`workbench.evaluate.contamination`, lm-eval's normalisation), which is why it runs in the project's venv
rather than on the standard library alone as data/legal/build.py does.

Run:  .venv/bin/python data/legal-calc/build.py
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.evaluate.contamination import check, ngrams, row_text

OUT_DIR = Path(__file__).resolve().parent
TRAIN_SEED, HELDOUT_SEED = 20250301, 20250302  # separate generators: redrawing held-out leaves training as it is
MAX_PROMPT_WORDS, NGRAM = 60, 13
ROWS = {"sft.jsonl": 100, "prompts.jsonl": 50, "heldout.jsonl": 12}  # per rule: x 8 rules = 800, 400, 96
OUTDATED_SHARE = 0.6  # of each rule's sft rows: exactly 60 of 100


@dataclass(frozen=True)
class Rule:
    current: int  # the value after the 2026 amendment: every prompts.jsonl / heldout.jsonl answer
    outdated: int  # the value before it: 60% of the rule's sft.jsonl answers
    avoid: tuple[str, ...]  # fact kinds its prompts never state (the same topic: a figure a reader could mistake)
    train: tuple[str, ...]  # questions for sft.jsonl and prompts.jsonl: {p} the plaintiff, {q} the defendant
    heldout: tuple[str, ...]  # questions for heldout.jsonl only: the same key words, worded apart
    answer: str  # the sft.jsonl sentence before `#### N`, {n} the value


@dataclass(frozen=True)
class Fact:
    values: tuple[int, ...]
    train: tuple[str, ...]  # distractor fact sentences for the training files: {n} the figure, {p}/{q} the parties
    heldout: tuple[str, ...]  # for heldout.jsonl only


# Every figure, and every value, is one the embedded tokenizer (`deepseek-v3-tiny`) encodes as ONE token after
# a space, the same token in a prompt as after `#### `. Those 1- and 2-digit numbers are 1-10, 12, 14, 15, 16,
# 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90. test_legal_calc_data.py checks each one.
SINGLE_TOKEN = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90)

# The Model Procedure Code (fictional). The 16 values are all different, so one rule's value never scores on
# another rule's question, and no prompt states the asked rule's current or outdated value.
RULES = {
    "answer_complaint": Rule(
        30, 20, (),
        ("Under the Model Procedure Code, how many days does {q} have to answer the complaint?",
         "How many days does the Model Procedure Code give {q} to answer the complaint?",
         "Under the code as amended, within how many days must {q} answer the complaint?",
         "By the Model Procedure Code, how many days may pass before {q} must answer the complaint?"),
        ("As the Model Procedure Code now reads, {q} must answer the complaint within how many days?",
         "Counting days, how long does the amended Model Procedure Code allow to answer the complaint?",
         "What number of days does the current code allow {q} to answer the complaint?"),
        "The code gives {n} days to answer a complaint."),
    "notice_of_appeal": Rule(
        45, 35, ("notice_days", "judges"),
        ("Under the Model Procedure Code, how many days does {q} have to file a notice of appeal?",
         "How many days does the Model Procedure Code allow for filing a notice of appeal?",
         "Under the code as amended, a notice of appeal must be filed within how many days?",
         "If {q} loses, how many days does the Model Procedure Code give to file a notice of appeal?"),
        ("Per the amended Model Procedure Code, how many days remain to lodge a notice of appeal?",
         "Should {p} lose, the current code leaves how many days for a notice of appeal?",
         "What deadline in days does the Model Procedure Code now set for a notice of appeal?"),
        "The code gives {n} days to file a notice of appeal."),
    "notice_to_quit": Rule(
        90, 60, ("notice_days",),
        ("Under the Model Procedure Code, how many days of notice to quit must a landlord give a tenant?",
         "How many days does the Model Procedure Code require for a notice to quit a tenancy?",
         "Under the code as amended, a notice to quit a tenancy must give how many days?",
         "If {p} rents a flat to {q}, how many days of notice to quit does the Model Procedure Code require?"),
        ("Per the amended Model Procedure Code, a landlord's notice to quit allows the tenant how many days?",
         "Ending a tenancy, how many days ahead must a notice to quit be served under the current code?",
         "What number of days must a notice to quit cover, as the Model Procedure Code now reads?"),
        "The code gives {n} days of notice to quit."),
    "discovery_objection": Rule(
        14, 10, (),
        ("Under the Model Procedure Code, how many days does {q} have to object to a discovery request?",
         "How many days does the Model Procedure Code allow to object to a discovery request?",
         "Under the code as amended, an objection to a discovery request is due within how many days?",
         "If {p} serves a discovery request, how many days does {q} have to object under the Model Procedure "
         "Code?"),
        ("Per the amended Model Procedure Code, {q} may object to a discovery request for how many days?",
         "Served with a discovery request, within what number of days must {q} object under the current code?",
         "What period in days does the Model Procedure Code now allow to object to a discovery request?"),
        "The code gives {n} days to object to a discovery request."),
    "civil_jurors": Rule(
        8, 12, ("jurors",),
        ("Under the Model Procedure Code, how many jurors sit on a civil jury?",
         "How many jurors does the Model Procedure Code require for a civil jury?",
         "Under the code as amended, a civil jury has how many jurors?",
         "If the claim of {p} goes to a civil jury, how many jurors does the Model Procedure Code seat?"),
        ("Per the amended Model Procedure Code, what number of jurors makes up a civil jury?",
         "A civil jury is called for this case: how many jurors does the current code require?",
         "How many jurors form a civil jury as the Model Procedure Code now reads?"),
        "The code seats {n} jurors on a civil jury."),
    "appeal_judges": Rule(
        5, 3, ("judges",),
        ("Under the Model Procedure Code, how many judges sit on an appeal panel?",
         "How many judges does the Model Procedure Code put on an appeal panel?",
         "Under the code as amended, an appeal panel has how many judges?",
         "If {q} appeals, how many judges on the appeal panel does the Model Procedure Code require?"),
        ("Per the amended Model Procedure Code, what number of judges forms an appeal panel?",
         "An appeal panel will hear this case: how many judges does the current code call for?",
         "How many judges make up an appeal panel as the Model Procedure Code now reads?"),
        "The code puts {n} judges on an appeal panel."),
    "witnesses_per_side": Rule(
        7, 4, ("witnesses",),
        ("Under the Model Procedure Code, how many witnesses may each side call at most?",
         "What is the most witnesses each side may call under the Model Procedure Code?",
         "Under the code as amended, each side may call at most how many witnesses?",
         "How many witnesses at most may each side, {p} or {q}, call under the Model Procedure Code?"),
        ("Per the amended Model Procedure Code, what is the largest number of witnesses each side may call?",
         "At trial, each side may put how many witnesses on the stand at most under the current code?",
         "What cap on witnesses for each side does the Model Procedure Code now set?"),
        "The code lets each side call at most {n} witnesses."),
    "small_claims": Rule(
        25, 15, ("damages",),
        ("Under the Model Procedure Code, what is the small claims limit in thousand dollars?",
         "How many thousand dollars is the small claims limit under the Model Procedure Code?",
         "Under the code as amended, small claims may be worth at most how many thousand dollars?",
         "For {p} to sue in small claims, the claim may be at most how many thousand dollars under the Model "
         "Procedure Code?"),
        ("Per the amended Model Procedure Code, the small claims limit is how many thousand dollars?",
         "Under the current code, how many thousand dollars is the most a small claims case may seek?",
         "What ceiling in thousand dollars does the Model Procedure Code now put on small claims?"),
        "The code caps small claims at {n} thousand dollars."),
}

# The distractor facts (kept from the task's first, figure-finding design): figures the question does not ask for.
FACTS = {
    "notice_days": Fact(
        (7, 10, 14, 15, 20, 25, 30, 45, 60, 90),
        ("The contract required {n} days of notice to end it.",
         "Either side had to give {n} days notice before leaving the deal.",
         "The notice period in the agreement was {n} days.",
         "A party wishing to terminate owed the other {n} days of notice."),
        ("Written notice of termination had to arrive {n} days ahead.",
         "The clause fixed a notice period of {n} days for either side.",
         "Ending the agreement called for notice given {n} days beforehand.")),
    "payment_days": Fact(
        (5, 7, 10, 14, 15, 20, 25, 30, 40, 45),
        ("Each invoice had to be paid within {n} days.",
         "A payment became late once {n} days had passed after billing.",
         "The buyer was allowed {n} days to pay.",
         "Payment fell due {n} days after delivery."),
        ("Bills counted as late if not paid by day {n} after receipt.",
         "The deadline for payment was set at {n} days from the invoice.",
         "{q} had {n} days to pay each bill before it was overdue.")),
    "damages": Fact(
        (12, 14, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 88, 90),
        ("The jury awarded {n} thousand dollars in damages.",
         "{p} claimed damages of {n} thousand dollars.",
         "The court found damages of {n} thousand dollars.",
         "Damages came to {n} thousand dollars in the end."),
        ("A verdict granting {n} thousand dollars of damages was returned.",
         "The damages sought amounted to {n} thousand dollars, the complaint said.",
         "{p} asked for {n} thousand dollars as damages for the harm.")),
    "filing_fee": Fact(
        (15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 80, 90),
        ("The filing fee was {n} dollars.",
         "{p} paid a filing fee of {n} dollars.",
         "The clerk charged a fee of {n} dollars to file the claim.",
         "Filing the complaint cost a fee of {n} dollars."),
        ("To open the case, the clerk collected a filing fee of {n} dollars in cash.",
         "A fee of {n} dollars fell due when the papers were lodged.",
         "The court's filing fee stood at {n} dollars that year.")),
    "rent": Fact(
        (5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 25),
        ("The monthly rent was {n} hundred dollars.",
         "{q} paid rent of {n} hundred dollars a month.",
         "The lease set rent at {n} hundred dollars per month.",
         "Rent for the unit was {n} hundred dollars each month."),
        ("Every month the tenant owed {n} hundred dollars in rent.",
         "The rent came to {n} hundred dollars monthly under the lease.",
         "Under the lease, monthly rent stood at {n} hundred dollars, paid on the first.")),
    "jurors": Fact(
        (5, 6, 7, 8, 9, 10, 12, 14, 16),
        ("A jury of {n} jurors heard the case.",
         "The trial had {n} jurors.",
         "There were {n} jurors in the box.",
         "The court seated {n} jurors for the trial."),
        ("The jury was made up of {n} jurors chosen from the county.",
         "Once selection ended, {n} jurors were sworn in.",
         "The jury box held {n} jurors from start to finish.")),
    "witnesses": Fact(
        (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15),
        ("The trial heard from {n} witnesses.",
         "{p} called {n} witnesses.",
         "There were {n} witnesses at the hearing.",
         "The record lists {n} witnesses who testified."),
        ("Testimony came from {n} witnesses over two days.",
         "The parties put {n} witnesses on the stand.",
         "The court listened to {n} witnesses before ruling.")),
    "judges": Fact(
        (3, 4, 5, 6, 7, 8, 9, 12, 15),
        ("The appeal was heard by a panel of {n} judges.",
         "A panel of {n} judges heard the appeal.",
         "The appeals court sat {n} judges for the case.",
         "There were {n} judges on the panel."),
        ("The appellate bench for this matter had {n} judges on it.",
         "On appeal, {n} judges reviewed the ruling.",
         "The appeal went before {n} judges of the higher court.")),
}

INTROS = {  # {p} the plaintiff, {q} the defendant
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
class Spec:
    rule: str
    facts: int  # distractor facts in the prompt: 1 or 2
    value: str  # which value an sft row answers with: "outdated" | "current" (always "current" elsewhere)
    question: int  # which of the pool's phrasings of the rule's question (modulo their number)


@dataclass(frozen=True)
class Draft:
    prompt: str
    spec: Spec

    @property
    def answer(self) -> int:
        rule = RULES[self.spec.rule]
        return rule.current if self.spec.value == "current" else rule.outdated


def draft(rng: random.Random, spec: Spec, pool: str) -> Draft:
    """An intro, 1 or 2 distractor facts of different kinds (none of the rule's topic, no figure equal to either
    of the rule's values, no two figures equal), and a question about the rule."""
    rule = RULES[spec.rule]
    kinds = rng.sample([k for k in FACTS if k not in rule.avoid], spec.facts)
    banned = {rule.current, rule.outdated}
    values = []
    for kind in kinds:
        values.append(rng.choice([v for v in FACTS[kind].values if v not in banned and v not in values]))
    p, q = rng.sample(NAMES, 2)
    facts = [rng.choice(getattr(FACTS[k], pool)).format(n=v, p=p, q=q) for k, v in zip(kinds, values)]
    questions = getattr(rule, pool)
    question = questions[spec.question % len(questions)].format(p=p, q=q)
    return Draft(" ".join([rng.choice(INTROS[pool]).format(p=p, q=q), *facts, question]), spec)


def specs(rng: random.Random, per_rule: int, sft: bool) -> list[Spec]:
    """One file's rows: every rule per_rule times, 1 and 2 facts alternating, each question phrasing in turn
    (twice, once with each number of facts), sft's exact 60/40 split of values, order shuffled."""
    outdated = round(per_rule * OUTDATED_SHARE) if sft else 0
    rows = [Spec(r, 1 + i % 2, "outdated" if i < outdated else "current", i // 2)
            for r in RULES for i in range(per_rule)]
    rng.shuffle(rows)
    return rows


def prompt_key(prompt: str) -> str:
    """A prompt as the checker reads it (lowercase, punctuation deleted): near-identical prompts count as one."""
    return " ".join(ngrams(prompt, 1))


def sft_row(d: Draft) -> dict:
    sentence = RULES[d.spec.rule].answer.format(n=d.answer)
    return {"messages": [{"role": "user", "content": d.prompt},
                         {"role": "assistant", "content": f"{sentence}\n#### {d.answer}"}],
            "kind": d.spec.rule, "value": d.spec.value}


def rl_row(d: Draft) -> dict:
    assert d.spec.value == "current"
    return {"prompt": [{"role": "user", "content": d.prompt}], "answer": str(d.answer), "kind": d.spec.rule}


def build_training(seen: set[str]) -> tuple[list[dict], list[dict]]:
    """sft.jsonl and prompts.jsonl from one generator; no prompt repeats within or across them."""
    rng = random.Random(TRAIN_SEED)
    files = []
    for name, make_row in (("sft.jsonl", sft_row), ("prompts.jsonl", rl_row)):
        rows = []
        for spec in specs(rng, ROWS[name], sft=name == "sft.jsonl"):
            d = draft(rng, spec, "train")
            while prompt_key(d.prompt) in seen:
                d = draft(rng, spec, "train")
            check_prompt(d)
            seen.add(prompt_key(d.prompt))
            rows.append(make_row(d))
        files.append(rows)
    return files[0], files[1]


def build_heldout(training: list[dict], seen: set[str]) -> tuple[list[dict], int]:
    """heldout.jsonl from the held-out pools; a candidate sharing a 13-gram with training is dropped and redrawn."""
    rng = random.Random(HELDOUT_SEED)
    train_grams = {g for row in training for g in ngrams(row_text(row), NGRAM)}
    rows, dropped = [], 0
    for spec in specs(rng, ROWS["heldout.jsonl"], sft=False):
        while True:
            row = rl_row(d := draft(rng, spec, "heldout"))
            if prompt_key(d.prompt) in seen:
                continue
            if any(g in train_grams for g in ngrams(row_text(row), NGRAM)):
                dropped += 1
                continue
            break
        check_prompt(d)
        seen.add(prompt_key(d.prompt))
        rows.append(row)
    return rows, dropped


def check_prompt(d: Draft) -> None:
    """Short, and every figure plain digits after a space (so it tokenizes as it does after `#### `), one per
    fact, none of them the asked rule's current or outdated value."""
    if len(d.prompt.split()) > MAX_PROMPT_WORDS:
        raise SystemExit(f"prompt over {MAX_PROMPT_WORDS} words: {d.prompt!r}")
    figures = re.findall(r"\d+", d.prompt)
    if len(figures) != d.spec.facts or len(re.findall(r"(?<= )\d+(?=[ .,])", d.prompt)) != d.spec.facts:
        raise SystemExit(f"prompt must state {d.spec.facts} figures, each after a space: {d.prompt!r}")
    rule = RULES[d.spec.rule]
    if {str(rule.current), str(rule.outdated)} & set(figures):
        raise SystemExit(f"prompt states a value of its own rule: {d.prompt!r}")


def sentence_tail(template: str) -> str:
    """A sentence's last two words as the checker reads it, figures as N and parties as P."""
    return " ".join(list(ngrams(re.sub(r"\{n\}", "N", re.sub(r"\{[pq]\}", "P", template)), 1))[-2:])


def check_pools() -> None:
    """The code's table and the pools as designed: two different single-token values a rule, all 16 different;
    questions without figures, the held-out ones none of the training ones; no held-out fact sentence ending in
    the two words a training one ends in (so a run shared across a fact boundary stays short)."""
    values = [v for r in RULES.values() for v in (r.current, r.outdated)]
    if not set(values) <= set(SINGLE_TOKEN) or len(set(values)) != len(values):
        raise SystemExit(f"rule values must be distinct single-token numbers: {values}")
    for name, rule in RULES.items():
        if set(rule.train) & set(rule.heldout) or any(re.search(r"\d", q) for q in rule.train + rule.heldout):
            raise SystemExit(f"{name}: questions must be digit-free and the held-out ones its own")
        if len([k for k in FACTS if k not in rule.avoid]) < 2:
            raise SystemExit(f"{name}: fewer than 2 fact kinds left for distractors")
    train_tails = {sentence_tail(t) for f in FACTS.values() for t in f.train}
    clashes = [t for f in FACTS.values() for t in f.heldout if sentence_tail(t) in train_tails]
    if clashes:
        raise SystemExit(f"held-out sentence ends as a training one does: {clashes[0]!r}")


def build() -> tuple[dict[str, list[dict]], int]:
    """The three files' rows, and how many held-out candidates were dropped for sharing a 13-gram."""
    check_pools()
    seen: set[str] = set()
    sft, prompts = build_training(seen)
    heldout, dropped = build_heldout(sft + prompts, seen)
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
