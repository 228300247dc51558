"""Benchmarks of the itermix samplers: speed and memory, picture quality, sweeps.

Run everything with ``python -m benchmarks`` (or ``make bench``); ``--quick`` is a smoke run.
Every figure is a ratio or a comparison against a baseline run in the same process on the
same inputs, written next to the machine, the versions and the command that produced it.
"""
