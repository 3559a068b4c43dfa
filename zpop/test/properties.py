"""The hypothesis profile of every property-based test module.

Derandomized, so CI and a developer see the same examples and a failure
reproduces; no deadline, since a loaded 2-core machine makes timings
meaningless; no example database left in the tree. Importing this module
loads the profile.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "zpop",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("zpop")
