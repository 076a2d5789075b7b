"""The exercise application: variants of the exercises the notes pose, with numbers that work out by hand,
their sheets and keys, and a class's answer sheets graded at once (``chainrule exercise``).

* :mod:`~chainrule.exercise.templates`: the kinds of exercise and the knobs of their difficulty;
* :mod:`~chainrule.exercise.friendly`: which values a sheet asks for, and the search for hand-friendly numbers;
* :mod:`~chainrule.exercise.sheets`: the question sheet in parts, the answer template and the key's answers;
* :mod:`~chainrule.exercise.variants`: the variants and their files;
* :mod:`~chainrule.exercise.grade`: a folder of answer sheets graded with ``check``'s diagnosis, and the
  class summary.
"""

from chainrule.exercise.templates import TEMPLATES, Knobs, Template, template
from chainrule.exercise.variants import Variant, make_variants, template_of_problem, write_manifest, write_variant

__all__ = [
    "TEMPLATES",
    "Knobs",
    "Template",
    "Variant",
    "make_variants",
    "template",
    "template_of_problem",
    "write_manifest",
    "write_variant",
]
