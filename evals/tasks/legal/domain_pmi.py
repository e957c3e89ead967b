"""Domain-conditional PMI for continuation tasks (`class: !function domain_pmi.DomainConditionalPMI`).

lm-eval's `acc_mutual_info` picks the choice with the largest log P(choice | prompt) - log P(choice | ""):
the empty context measures how likely the choice's text is to open a document. This task class keeps
lm-eval's metric and changes only that reference context: it becomes the task's own 0-shot prompt with
the question left out (rendered through the chat template too when the run applies one), so the score
measures what the *question* adds to each answer, not how the template or the text's length and
wording favour it (Holtzman et al. 2021, "Surface Form Competition", domain-conditional PMI).

    lm-eval run --model hf --model_args pretrained=<dir> --tasks legal_cloze --include_path <task dir> \
        [--apply_chat_template]
"""

from lm_eval.api.task import ConfigurableTask


class DomainConditionalPMI(ConfigurableTask):
    """A multiple-choice task whose `acc_mutual_info` reference context is the question-free prompt."""

    QUESTION_FIELD = "question"

    def __init__(self, config: dict | None = None, **kwargs):
        # lm-eval hands a `class:` task its whole YAML, the `class` key included, which TaskConfig rejects.
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"}, **kwargs)

    def construct_requests(self, doc: dict, ctx, **kwargs):
        apply_chat_template = kwargs.get("apply_chat_template", False)
        chat_template = kwargs.get("chat_template")
        requests = super().construct_requests(doc, ctx, **kwargs)
        if "acc_mutual_info" not in self._metric_fn_list:
            return requests
        # The 0-shot prompt of a document whose question is empty: same description, template and chat turns.
        reference = self.fewshot_context({**doc, self.QUESTION_FIELD: ""}, num_fewshot=0,
                                         apply_chat_template=apply_chat_template, chat_template=chat_template)
        n_choices = len(requests) // 2  # lm-eval appends one ("", choice) request per choice
        for request in requests[n_choices:]:
            _, continuation = request.arguments
            request.arguments = (reference, continuation)
        return requests
