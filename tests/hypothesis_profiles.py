"""Hypothesis profiles, chosen by ``CLAIRE_HYPOTHESIS_PROFILE`` (default ``dev``).

* ``dev`` / ``ci`` — what ``make test`` runs: the model property finishes in well under two
  minutes on a 2-core machine (``ci`` also prints statistics and never uses the example database).
* ``thorough`` — ten times as many examples, run by hand:
  ``CLAIRE_HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/model``.
* ``mutation`` — few examples, derandomised: what ``tests/model/mutate.py`` runs per mutant.

Tests that pin their own ``max_examples`` keep it; the others follow the profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILE_ENV = "CLAIRE_HYPOTHESIS_PROFILE"
EXAMPLES = 100
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("dev", max_examples=EXAMPLES, deadline=None, suppress_health_check=_SLOW)
settings.register_profile(
    "ci",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=_SLOW,
    database=None,
    print_blob=True,
)
settings.register_profile(
    "thorough", max_examples=10 * EXAMPLES, deadline=None, suppress_health_check=_SLOW
)
settings.register_profile(
    "mutation",
    max_examples=40,
    deadline=None,
    suppress_health_check=_SLOW,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


#: Examples of the reference-model property (tests/model) per profile: a session drives the
#: whole closed loop and the model, so it runs fewer than a unit property; ``thorough`` is 10x.
MODEL_EXAMPLES = {"dev": 100, "ci": 100, "thorough": 1000, "mutation": 60}


def model_examples() -> int:
    """The model property's example count under the profile in force."""
    return MODEL_EXAMPLES.get(os.environ.get(PROFILE_ENV, "dev"), 100)


def load() -> str:
    """Load the profile the environment names (``dev`` when unset); returns its name."""
    name = os.environ.get(PROFILE_ENV, "dev")
    settings.load_profile(name)
    return name
