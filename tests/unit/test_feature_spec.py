"""The FeatureSpec's scaler: fitted on the training window, constant features never live."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml.bundle import FeatureSpec


def test_a_feature_constant_in_the_fit_window_reaches_no_model():
    # GIVEN a volatility index that is 0 (no data yet) for the whole training window and
    # varies afterwards, beside an ordinary feature
    fit = pd.DataFrame({"ret": [0.01, -0.02, 0.03, 0.0], "vix": [0.0, 0.0, 0.0, 0.0]})
    later = pd.DataFrame({"ret": [0.02, -0.01], "vix": [18.5, 35.0]})

    # WHEN the spec is fitted on the training window and applied to later rows
    spec = FeatureSpec.fit(fit, ["ret", "vix"], window=1, horizon=1)
    scaled = spec.transform(later)

    # THEN the constant feature is inactive: fed as 0 whatever its later value, while the
    # other feature is standardised with the window's own mean and (population) std
    assert spec.inactive == ["vix"]
    np.testing.assert_array_equal(scaled[:, 1], [0.0, 0.0])
    expected = (later["ret"] - fit["ret"].mean()) / fit["ret"].std(ddof=0)
    np.testing.assert_allclose(scaled[:, 0], expected, rtol=1e-6)
    # and the spec round-trips through JSON, as the bundle stores it
    assert FeatureSpec.from_json(spec.to_json()) == spec


def test_a_spec_written_before_inactive_features_existed_still_loads():
    old = '{"feature_names": ["a"], "mean": [0.0], "std": [1.0], "window": 1, "horizon": 1}'
    spec = FeatureSpec.from_json(old)
    assert spec.inactive == []
    np.testing.assert_allclose(spec.transform(pd.DataFrame({"a": [2.0]})), [[2.0]])
