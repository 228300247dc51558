"""comfy.model_management (ComfyUI 0.8.0's names): where sampled latents go, and Cancel.

ComfyUI's server calls ``interrupt_current_processing()`` when the user presses Cancel; the
next ``throw_exception_if_processing_interrupted()`` (the server's progress-bar hook makes one
at every step) raises :class:`InterruptProcessingException` and clears the request, so the
following prompt runs. The stand-in keeps everything on the CPU.
"""

import threading

import torch

_cancel_requested = threading.Event()


class InterruptProcessingException(Exception):
    """Raised inside a run after Cancel."""


def get_torch_device():
    """The device models run on (ComfyUI's GPU when it has one; the stand-in's CPU)."""
    return torch.device("cpu")


def intermediate_device():
    """Where nodes hand latents to each other."""
    return torch.device("cpu")


def interrupt_current_processing(value=True):
    if value:
        _cancel_requested.set()
    else:
        _cancel_requested.clear()


def throw_exception_if_processing_interrupted():
    if _cancel_requested.is_set():
        _cancel_requested.clear()
        raise InterruptProcessingException()
