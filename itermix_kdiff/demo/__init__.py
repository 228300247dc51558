"""The embedded demo model: a procedural shapes dataset, its metrics, a tiny classifier and trainer.

Submodules are imported on demand (``from itermix_kdiff.demo import shapes``) so that importing
this package costs nothing.
"""
