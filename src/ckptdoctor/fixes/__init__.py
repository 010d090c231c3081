"""Repairs: plans of steps that change a checkpoint's value tree, applied, written and verified.

* :mod:`ckptdoctor.fixes.plan` -- ``Step``, ``Change``, ``Tree``, ``Plan`` and the step ids;
* :mod:`ckptdoctor.fixes.steps` -- ``make_step(id, ...)`` and the small steps;
* :mod:`ckptdoctor.fixes.extract`, ``safe``, ``rename`` -- the larger steps;
* :mod:`ckptdoctor.fixes.auto` -- the automatic plan of ``fix`` and the plan of ``convert``;
* :mod:`ckptdoctor.fixes.apply` -- ``fix_file`` / ``convert_file``: atomic write, verification, record.

See docs/fix.md and docs/convert.md.
"""
