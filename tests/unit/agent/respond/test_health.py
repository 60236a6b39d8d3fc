"""Which evaluations vouch for a version as a rollback candidate."""

from __future__ import annotations

from agent.pipeline import engine as engine_mod
from agent.respond import health
from detectors import window as window_mod
from tests.unit.agent import factories as f


def _evaluation(*, at_record: bool, labelled: bool) -> engine_mod.Evaluation:
    clean = f.Run().window([], 0.0)
    window = window_mod.Window(features={}, model_version="7", last_record_index=41)
    return engine_mod.Evaluation(window, (), clean, labelled=labelled, at_record=at_record)


def test_a_clean_labelled_window_vouches_but_a_sequential_alarm_record_never_does() -> None:
    assert (
        health.vouches_for_version(
            _evaluation(at_record=False, labelled=True), f.Run().window([], 0.0), labels_flow=True
        )
        == "7"
    )
    # A record where a sequential test fired (even one the policy rated none) is not a window.
    assert (
        health.vouches_for_version(
            _evaluation(at_record=True, labelled=True), f.Run().window([], 0.0), labels_flow=True
        )
        is None
    )
    # With labels configured, an unlabelled window says nothing either.
    assert (
        health.vouches_for_version(
            _evaluation(at_record=False, labelled=False), f.Run().window([], 0.0), labels_flow=True
        )
        is None
    )
