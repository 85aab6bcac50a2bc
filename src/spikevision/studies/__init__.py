"""Studies: every arm x seed of a comparison trained under one budget, resumable at any point, and its page.

A study is one YAML file (``studies/<name>.yaml``)::

    title: "MS-ResNet vs vanilla spiking ResNet over depth (Hu et al., TNNLS 2024)"
    claim: "MS-ResNet does not lose accuracy as depth grows; the vanilla network does."
    recipe: configs/quickstart.yaml      # base recipe (optional; omitted = the config defaults)
    settings:                            # the budget, the same for every arm
      train.epochs: 3
      model.T: 2
    seeds: [0, 1, 2]
    arms:                                # arm name -> its own settings
      ms_resnet20: {model.name: ms_resnet20}
      spiking_resnet20: {model.name: spiking_resnet20}
    measure: {energy: true, isometry: false}
    verdict: "free text, written after the results"   # optional

Each arm x seed is an ordinary training run in ``<out_dir>/<study>/<arm>-s<seed>/`` (seed ``s`` sets
``train.seed`` and ``data.seed``). The package is laid out as a study's life:

* :mod:`~spikevision.studies.spec`: the file, validated at once (:func:`load_study`), and its runs
  (:func:`plan_runs`);
* :mod:`~spikevision.studies.runner`: :func:`run_study` trains what is missing (skipping finished runs,
  resuming interrupted ones exactly), measures each run (:func:`measure_run`: firing rate, operations and
  energy per image, optionally the gradient-isometry probe) and keeps its small result files
  (``metrics.jsonl``, ``measures.json``) in ``<results_dir>/<study>/<arm>-s<seed>/``;
* :mod:`~spikevision.studies.page`: the page (:func:`write_study_page`), written from those kept files
  alone, so it can be regenerated without retraining.

It sits above training and analysis (it uses both; neither knows it). The command
``spikevision study`` (:mod:`spikevision.commands.study`) is a thin layer over it.
"""

from spikevision.studies.page import ArmResult, collect_results, render_study, write_study_page
from spikevision.studies.runner import measure_run, run_status, run_study
from spikevision.studies.spec import (MEASURES_FILE, PINNED_KEYS, STUDY_KEYS, StudyRun, StudySpec, load_study,
                                      plan_runs)

__all__ = ["StudySpec", "StudyRun", "load_study", "plan_runs", "run_study", "run_status", "measure_run",
           "ArmResult", "collect_results", "render_study", "write_study_page", "MEASURES_FILE", "STUDY_KEYS",
           "PINNED_KEYS"]
