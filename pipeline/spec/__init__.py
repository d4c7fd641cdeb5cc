"""The front ends: spec directories (HCL) and Dockerfiles become the frozen
:class:`~pipeline.model.Fleet` the compiler reads.

``loader`` is the entry point (:func:`~pipeline.spec.loader.load_fleet`); ``schema``,
``variables`` and ``blocks`` are its stages; ``lower`` turns an ``app`` into ordered
steps; ``dockerfile`` and ``dockerwords`` give Dockerfiles Docker's meaning. Pure apart
from reading spec files, Dockerfiles and the build contexts' ignore files.
"""
