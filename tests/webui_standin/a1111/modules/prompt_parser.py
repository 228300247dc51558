"""``modules.prompt_parser``: prompt schedules and the conditioning objects in the sampler's
``extra_args`` (docs/webui-api.md, "Conditioning").

The objects have the webui's types: ``ScheduledPromptConditioning`` is a namedtuple,
``ComposableScheduledPromptConditioning`` and ``MulticondLearnedConditioning`` are classes
with named constructor arguments, ``DictWithShape`` is the dict SDXL's stacked conditioning
comes in. Of the prompt syntax the stand-in reads prompt editing, ``[from:to:when]`` and
``[to:when]`` (not nested), and ``AND`` with an optional ``:weight``; alternation,
attention and nesting are left to the webui. Prompts are expected to give conditionings
of one token count (no padding).
"""

import re
from collections import namedtuple

import torch

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])

# One prompt edit; the groups are (from or None, to, when).
_PROMPT_EDIT = re.compile(r"\[(?:([^\[\]:]*):)?([^\[\]:]*):\s*(\d*\.?\d+)\s*\]")
_AND = re.compile(r"\bAND\b")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def _last_step_of_first_text(when, steps, first_pass_steps, use_old_scheduling):
    """The last step at which an edit still shows its first text. ``when`` is the edit's
    number as written; ``first_pass_steps`` is None outside the hires pass."""
    value = float(when)
    if use_old_scheduling:  # the old rule: below 1 a fraction, else a step
        return min(steps, int(value * steps if value < 1 else value))
    is_fraction = "." in when
    if first_pass_steps is not None:  # the hires pass goes on where the first pass ended
        value -= 1.0 if is_fraction else first_pass_steps
    return min(steps, int(value * steps if is_fraction else value))


def _prompt_schedule(prompt, steps, first_pass_steps, use_old_scheduling):
    pieces = _PROMPT_EDIT.split(prompt)  # text, from, to, when, text, from, to, when, ..., text
    texts = pieces[0::4]
    edits = [(before or "", after, _last_step_of_first_text(when, steps, first_pass_steps, use_old_scheduling))
             for before, after, when in zip(pieces[1::4], pieces[2::4], pieces[3::4])]

    def prompt_at(step):
        chosen = [before if step <= last else after for before, after, last in edits]
        return texts[0] + "".join(edit + text for edit, text in zip(chosen, texts[1:]))

    switches = {last for _, _, last in edits if last >= 1}
    return [[step, prompt_at(step)] for step in sorted(switches | {steps})]


def get_learned_conditioning_prompt_schedules(prompts, base_steps, hires_steps=None, use_old_scheduling=False):
    """Per prompt, ``[[end_at_step, text], ...]``: each text is in use up to and including
    its step. A ``when`` with a decimal point is a fraction of the steps, else a step
    number; in the hires pass (``hires_steps`` given) they count on from the first pass
    (from 1.0, from ``base_steps``), so what the first pass switched stays switched."""
    in_hires_pass = hires_steps is not None and not use_old_scheduling
    steps = hires_steps if in_hires_pass else base_steps
    first_pass_steps = base_steps if in_hires_pass else None
    return [_prompt_schedule(prompt, steps, first_pass_steps, use_old_scheduling) for prompt in prompts]


def _one_row(conds, index):
    if isinstance(conds, torch.Tensor):
        return conds[index]
    return {key: conds[key][index] for key in conds}  # SDXL: a dict of stacked tensors


def _learned_schedule(model, schedule):
    conds = model.get_learned_conditioning([text for _, text in schedule])
    return [ScheduledPromptConditioning(end_at_step, _one_row(conds, i)) for i, (end_at_step, _) in enumerate(schedule)]


def get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    """Per prompt, its schedule as ``ScheduledPromptConditioning(end_at_step, cond)``, with
    ``cond`` the model's ``get_learned_conditioning`` row of that text. Equal prompts share
    one list, learned once."""
    distinct = list(dict.fromkeys(prompts))
    schedules = get_learned_conditioning_prompt_schedules(distinct, steps, hires_steps, use_old_scheduling)
    learned = {prompt: _learned_schedule(model, schedule) for prompt, schedule in zip(distinct, schedules)}
    return [learned[prompt] for prompt in prompts]


def _text_and_weight(subprompt):
    """``"text:1.5"`` -> ``("text", 1.5)``; no trailing number -> weight 1. Whitespace
    before the colon and at the end is not part of the text."""
    head, colon, tail = subprompt.rpartition(":")
    if colon and _NUMBER.fullmatch(tail.strip()):
        return head.rstrip(), float(tail)
    return subprompt.rstrip(), 1.0


def get_multicond_prompt_list(prompts):
    """``(per prompt, its sub-prompts as (index into the flat list, weight); the flat list
    of distinct sub-prompt texts; text -> index)``; sub-prompts are split at ``AND``."""
    index_of, per_prompt = {}, []
    for prompt in prompts:
        parts = []
        for subprompt in _AND.split(prompt):
            text, weight = _text_and_weight(subprompt)
            parts.append((index_of.setdefault(text, len(index_of)), weight))
        per_prompt.append(parts)
    return per_prompt, list(index_of), index_of


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules = schedules  # a list of ScheduledPromptConditioning
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape = shape  # (number of prompts,)
        self.batch = batch  # per image, one ComposableScheduledPromptConditioning per sub-prompt


def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    per_prompt, texts, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, texts, steps, hires_steps, use_old_scheduling)

    def composed(parts):
        return [ComposableScheduledPromptConditioning(learned[index], weight) for index, weight in parts]

    return MulticondLearnedConditioning(shape=(len(prompts),), batch=[composed(parts) for parts in per_prompt])


class DictWithShape(dict):
    """SDXL's stacked conditioning: a dict whose ``shape`` is that of its cross-attention
    tensor, so code written for tensors can ask for it."""

    def __init__(self, x, shape=None):
        super().__init__(x)

    @property
    def shape(self):
        return self["crossattn"].shape


def _in_force(schedule, step):
    """The conditioning of ``schedule`` at ``step``: the first entry not yet ended (past
    the last, the first)."""
    for entry in schedule:
        if step <= entry.end_at_step:
            return entry.cond
    return schedule[0].cond


def _stack(conds):
    if isinstance(conds[0], torch.Tensor):
        return torch.stack(conds)
    return DictWithShape({key: torch.stack([cond[key] for cond in conds]) for key in conds[0]})


def reconstruct_cond_batch(c, current_step):
    """The negative prompts at ``current_step``, one row per image."""
    return _stack([_in_force(schedule, current_step) for schedule in c])


def reconstruct_multicond_batch(c, current_step):
    """``(conds_list, stacked)``: every image's sub-prompts at ``current_step`` stacked in
    order, and per image the ``(row in stacked, weight)`` of each of its sub-prompts."""
    rows, conds_list = [], []
    for composables in c.batch:
        first = len(rows)
        rows.extend(_in_force(composable.schedules, current_step) for composable in composables)
        conds_list.append([(first + j, composable.weight) for j, composable in enumerate(composables)])
    return conds_list, _stack(rows)
