"""Real servers for the retrain tests: MLflow (shared with the registry tests) and a kube-apiserver."""

from __future__ import annotations
