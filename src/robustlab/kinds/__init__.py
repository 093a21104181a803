"""The built-in study job kinds, one module each: ``clean``, ``attack``, ``audit``, ``autoattack``, ``clever``,
``corruption``, ``semantic``, ``transfer``.

Each module subclasses :class:`robustlab.store.kinds.JobKind` and registers one instance; it owns the kind's
spec section, phase dependencies, planning, run function, record schema (with its version), analysis and
report sections. Nothing else in the study pipeline names a kind: the spec (:func:`robustlab.bench.spec_model`),
the planner and run loop (:func:`robustlab.bench.run_study`), the store's views, :func:`robustlab.analysis.analyse_run`
and :func:`robustlab.report.write_report` all iterate over the registered kinds.

Where it sits. This package is above ``bench``, ``analysis`` and ``report`` (a kind plans with bench, analyses
with analysis and draws with report) and nothing below imports it by name: the registry in
:mod:`robustlab.store.kinds` imports it on first use, as entry points load plugins. DESIGN's arrows
(``cli → bench/report → analysis → store``, and nothing under attacks/metrics/models/data importing any of them)
are unchanged.

Adding a kind. Write one module here (or anywhere, imported before the study runs) with a ``JobKind``
subclass and ``register_kind(MyKind())``; add it to the imports below to make it built in. Its records get
their DuckDB view, its section its place in the spec and the report, with no other edit.

Schema versions and job ids. A kind's ``schema.version`` is part of its job ids. The ``clean`` (version 2:
it records the model's ``source``), ``attack`` (2: the success rule's columns ``correct``, ``robust``,
``won`` and ``fixed_budget``) and ``clever`` (2: the version moved from a column to the file's metadata)
records changed, so their ids changed; ``corruption`` keeps version 1 and its ids; ``transfer`` keeps version
1, but its ids follow the attack jobs they depend on.
"""

from robustlab.kinds import attack as attack
from robustlab.kinds import audit as audit
from robustlab.kinds import autoattack as autoattack
from robustlab.kinds import clean as clean
from robustlab.kinds import clever as clever
from robustlab.kinds import corruption as corruption
from robustlab.kinds import semantic as semantic
from robustlab.kinds import transfer as transfer

__all__: list[str] = []  # the modules register their kinds; nothing else to export
