"""The model lifecycle: from a training run to 100% of clinics, each step recorded and each decision reproducible.

One module per step (brief 4.6 and 4.7), imported where used so that a light command stays light:

* :mod:`~dermascan.lifecycle.gates` - the promotion gates on the test evaluation, the benchmark, the fairness
  audit and the export parity (``dermascan gate``);
* :mod:`~dermascan.lifecycle.abtest` - the shadow A/B decision on confirmed cases: exact McNemar on melanoma
  sensitivity, specificity non-inferiority, the stop rule (``dermascan abtest``), and
  :mod:`~dermascan.lifecycle.abtest_sim` its simulated operating characteristics;
* :mod:`~dermascan.lifecycle.rollout` - the staged 10% -> 50% -> 100% rollout on the service's canary share, held
  or rolled back on the canary's live figures (``dermascan rollout``);
* :mod:`~dermascan.lifecycle.registry` - the MLflow registry: runs, model versions with their manifest digest
  and dataset fingerprint, aliases ``champion`` / ``challenger`` (MLflow is imported only there);
* :mod:`~dermascan.lifecycle.feedback_data` - confirmed production cases as a new ISIC-layout dataset;
* :mod:`~dermascan.lifecycle.release` - evaluate -> export -> bench -> gate -> register, stopping at a failure;
* :mod:`~dermascan.lifecycle.sweep` - Optuna sweeps (Optuna is imported only there);
* :mod:`~dermascan.lifecycle.demo` - the steps ``dermascan demo`` shows.

The dataset fingerprint itself lives in :mod:`dermascan.data.fingerprint`, below training, which records it.
"""
