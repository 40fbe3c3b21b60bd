"""Property-based: generated valid requests get 2xx and valid responses; generated invalid
requests get a 4xx with the dialect's envelope. Example counts come from the hypothesis
profile (dev / ci / thorough); the example database lives under the report dir."""

from __future__ import annotations

from typing import Any

from hypothesis import given, seed
from hypothesis import settings as HypothesisSettings
from hypothesis import strategies as st

from chatprobe.checks import (
    invalid_request_findings,
    max_tokens_findings,
    n_findings,
    stop_findings,
)
from chatprobe.conformance import CheckRecord, Target
from chatprobe.strategies import invalid_requests, valid_requests

# dev and ci are derandomized, but hypothesis derives their seed from more than the test
# (an installed wheel and a source checkout drew different examples): a CI gate must give the
# same verdict everywhere, so those profiles get this fixed seed. thorough stays random.
PROPERTY_SEED = 20261121


def _pinned(run: Any, hypothesis_settings: HypothesisSettings) -> Any:
    return seed(PROPERTY_SEED)(run) if hypothesis_settings.derandomize else run


def _must_features(target: Target) -> list[str]:
    return [name for name, level in target.profile.features.items() if level == "must"]


def test_generated_valid_requests(
    chatprobe_target: Target, chatprobe_check: CheckRecord, chatprobe_hypothesis_settings: HypothesisSettings
) -> None:
    """Only `must` features: a server may decline a `may` one (its own checks say unsupported)."""
    models = st.just(chatprobe_target.model) if chatprobe_target.model else None
    strategy = valid_requests(chatprobe_target.profile, features=_must_features(chatprobe_target), models=models)

    @chatprobe_hypothesis_settings
    @given(spec=strategy)
    def run(spec: object) -> None:
        from chatprobe.dialects import RequestSpec

        assert isinstance(spec, RequestSpec)
        _, outcome = chatprobe_check.send(spec)
        chatprobe_check.add(max_tokens_findings(outcome, spec.body, chatprobe_target.profile))
        chatprobe_check.add(stop_findings(outcome, spec.body))
        chatprobe_check.add(n_findings(outcome, spec.body))

    _pinned(run, chatprobe_hypothesis_settings)()


def test_generated_invalid_requests(
    chatprobe_target: Target, chatprobe_check: CheckRecord, chatprobe_hypothesis_settings: HypothesisSettings
) -> None:
    models = st.just(chatprobe_target.model) if chatprobe_target.model else None

    @chatprobe_hypothesis_settings
    @given(invalid=invalid_requests(chatprobe_target.profile, models=models))
    def run(invalid: object) -> None:
        from chatprobe.strategies import InvalidRequest

        assert isinstance(invalid, InvalidRequest)
        ex = chatprobe_check.exchange(invalid.request)
        chatprobe_check.add(invalid_request_findings(ex, chatprobe_target.profile, invalid.rule, invalid.description), ex)

    _pinned(run, chatprobe_hypothesis_settings)()
