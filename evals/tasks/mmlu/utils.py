"""Per-subject row filters for the mmlu_local tasks (`process_docs: !function utils.<subject>`).

evals/data/mmlu_local keeps all subjects in one file with a `subject` column, where the hub dataset
has one config per subject; filtering test and dev rows alike keeps few-shot examples in-subject.
"""


def _only(dataset, subject: str):
    return dataset.filter(lambda row: row["subject"] == subject)


def high_school_mathematics(dataset):
    return _only(dataset, "high_school_mathematics")


def elementary_mathematics(dataset):
    return _only(dataset, "elementary_mathematics")


def high_school_biology(dataset):
    return _only(dataset, "high_school_biology")


def high_school_computer_science(dataset):
    return _only(dataset, "high_school_computer_science")


def astronomy(dataset):
    return _only(dataset, "astronomy")


def nutrition(dataset):
    return _only(dataset, "nutrition")
