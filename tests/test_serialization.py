"""The JSON the HTTP API sends (``encode_view``: msgspec) is what the CLI prints
(``unstructure``: cattrs), key for key, instants included; text msgspec refuses goes the
slow way and is still valid JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from teamflow import views
from teamflow.serialization import encode_view, unstructure

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


def _task(context: dict[str, object], error: str | None = None, at: float = 1796192929.631013) -> views.TaskView:
    step = views.StepView("charge", "failed", 2, context, error, "PermanentError", [], at, at + 0.5, [], None)
    history = views.TransitionView("charge", "in_progress", "failed", 2, "worker:w1", error, at + 0.5)
    return views.TaskView(
        "01a23380-6a79-7a00-8000-000000000001", "billing", "charge", "1.0.0", "billing/charge@1.0.0", "failed",
        [step], error, None, None, context, "f" * 64, None, at, None, views.links("t"), [], [history],
    )


@given(context=st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4), error=st.none() | st.text(max_size=20))
def test_the_api_json_is_the_cli_json(context: dict[str, object], error: str | None) -> None:
    view = _task(context, error)
    sent = json.loads(encode_view(view))
    assert sent == json.loads(json.dumps(unstructure(view)))
    assert list(sent) == sorted(sent)  # keys in name order on both (the CLI sorts too)


def test_instants_are_rfc_3339_utc_with_z_on_both_paths() -> None:
    view = _task({}, at=datetime(2026, 12, 2, 6, 23, 19, tzinfo=UTC).timestamp())
    assert json.loads(encode_view(view))["created_at"] == "2026-12-02T06:23:19Z"
    assert unstructure(view)["transitions"][0]["at"] == "2026-12-02T06:23:19.500000Z"


def test_a_lone_surrogate_goes_the_slow_way_as_valid_ascii_json() -> None:
    view = _task({"note": "x\udc80y"}, error="bad \ud800 text")
    body = encode_view(view)  # msgspec refuses it (UTF-8 cannot hold a lone surrogate)
    assert body.isascii()
    decoded = json.loads(body)
    assert decoded["context"] == {"note": "x\udc80y"} and decoded["error_summary"] == "bad \ud800 text"
    assert decoded == json.loads(json.dumps(unstructure(view)))
    assert list(decoded) == sorted(decoded)
