"""Names of what mtl-search stores on a study (Optuna user attributes), in one place.

Every command reads these: ``run`` writes them, ``pareto``, ``report``, ``export``,
``refine`` and ``pruning`` read them. This module imports nothing, so any module may use it.
"""

# data description, tasks, input schema, objectives, space and preprocessing of the study
STUDY_ATTR = "mtl_search"
# every space the study was searched with: [{"from_trial": N, "space": ...}, ...]
SPACES_ATTR = "spaces"
# the artifact folder the search wrote trained weights to
ARTIFACT_DIR_ATTR = "artifact_dir"
# the measured task affinity and the grouping chain cut from it
AFFINITY_ATTR = "affinity"
# the front's hypervolume and its history over trials
HYPERVOLUME_ATTR = "hypervolume"
# a refinement of trial N (mean and spread over training seeds): "refined:N"
REFINED_PREFIX = "refined:"
# the reference models a front is read against (single-task networks, gradient boosting)
REFERENCES_ATTR = "references"
