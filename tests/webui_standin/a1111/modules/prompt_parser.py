"""``modules.prompt_parser``: prompt schedules and the conditioning objects the CFG denoiser
receives (docs/webui-api.md, "Conditioning").

The objects are the webui's types: ``ScheduledPromptConditioning`` is a namedtuple,
``ComposableScheduledPromptConditioning`` and ``MulticondLearnedConditioning`` are classes
built from named arguments, ``DictWithShape`` is the dict SDXL's stacked conditioning comes
in. The schedule parser reads the prompt-editing subset ``[from:to:when]`` and ``[to:when]``
(not nested) and ``AND`` with an optional ``:weight``; the webui's grammar reads more
(nesting, alternation, attention), which the shim never looks at."""

import re
from collections import namedtuple

import torch

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])

_EDIT = re.compile(r"\[([^\[\]:]*):(?:([^\[\]:]*):)?\s*([0-9]*\.?[0-9]+)\s*\]")
_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)))?\s*$", re.S)


def get_learned_conditioning_prompt_schedules(prompts, base_steps, hires_steps=None, use_old_scheduling=False):
    """For each prompt, ``[[end_at_step, text], ...]``: the text in use up to and including
    that step. ``when`` with a decimal point is a fraction of the steps, else a step number;
    in the hires pass (``hires_steps``) a fraction counts from 1.0 and a number from
    ``base_steps``, so an edit the first pass already made stays made."""
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps

    def switch_step(text):
        value = float(text)
        if use_old_scheduling:
            value = value * steps if value < 1 else value
        elif "." in text:
            value = (value - flt_offset) * steps
        else:
            value = value - int_offset
        return min(steps, int(value))

    def schedule(prompt):
        edits = [(m, switch_step(m.group(3))) for m in _EDIT.finditer(prompt)]
        ends = sorted({steps, *(when for _, when in edits if when >= 1)})

        def text_at(step):
            def pick(m):
                before, after = (m.group(1), m.group(2)) if m.group(2) is not None else ("", m.group(1))
                return before if step <= switch_step(m.group(3)) else after
            return _EDIT.sub(pick, prompt)

        return [[end, text_at(end)] for end in ends]

    cache = {prompt: schedule(prompt) for prompt in set(prompts)}
    return [cache[prompt] for prompt in prompts]


def get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    """One list of ``ScheduledPromptConditioning`` per prompt; ``cond`` is the model's
    ``get_learned_conditioning`` row for the text in use: a ``(tokens, dim)`` tensor, or for
    SDXL a dict of tensors (``crossattn``, ``vector``)."""
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache, result = {}, []
    for prompt, schedule in zip(prompts, schedules):
        if prompt not in cache:
            conds = model.get_learned_conditioning([text for _, text in schedule])
            rows = []
            for i, (end_at_step, _) in enumerate(schedule):
                cond = {k: v[i] for k, v in conds.items()} if isinstance(conds, dict) else conds[i]
                rows.append(ScheduledPromptConditioning(end_at_step, cond))
            cache[prompt] = rows
        result.append(cache[prompt])
    return result


def get_multicond_prompt_list(prompts):
    """``(indexes, flat prompts, index of each flat prompt)``: each prompt split on ``AND``
    into ``(index into the flat list, weight)`` pairs, equal sub-prompts sharing an index."""
    indexes, flat, index_of = [], [], {}
    for prompt in prompts:
        parts = []
        for part in _AND.split(prompt):
            text, weight = _WEIGHT.match(part).groups()
            if text not in index_of:
                index_of[text] = len(flat)
                flat.append(text)
            parts.append((index_of[text], 1.0 if weight is None else float(weight)))
        indexes.append(parts)
    return indexes, flat, index_of


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules = schedules  # list of ScheduledPromptConditioning
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape = shape  # (number of prompts,)
        self.batch = batch  # per image: list of ComposableScheduledPromptConditioning


def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps, hires_steps, use_old_scheduling)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in parts] for parts in indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


class DictWithShape(dict):
    def __init__(self, x, shape=None):
        super().__init__()
        self.update(x)

    @property
    def shape(self):
        return self["crossattn"].shape

    def advanced_indexing(self, item):
        return DictWithShape({k: v[item] for k, v in self.items() if isinstance(v, torch.Tensor)})


def _index_at(schedules, current_step):
    # The first entry still in force at this step; past the last one, the first.
    return next((i for i, entry in enumerate(schedules) if current_step <= entry.end_at_step), 0)


def _stack(conds):
    if isinstance(conds[0], dict):
        return DictWithShape({k: torch.stack([c[k] for c in conds]) for k in conds[0]})
    return torch.stack(conds)


def reconstruct_cond_batch(c, current_step):
    """The negative prompt's conditioning at ``current_step``: one row per image, stacked."""
    return _stack([schedules[_index_at(schedules, current_step)].cond for schedules in c])


def reconstruct_multicond_batch(c, current_step):
    """``(conds_list, stacked)``: the rows of every image's sub-prompts at ``current_step``,
    stacked, and per image the ``(row, weight)`` of each of its sub-prompts."""
    rows, conds_list = [], []
    for composables in c.batch:
        parts = []
        for composable in composables:
            parts.append((len(rows), composable.weight))
            rows.append(composable.schedules[_index_at(composable.schedules, current_step)].cond)
        conds_list.append(parts)
    return conds_list, _stack(rows)
