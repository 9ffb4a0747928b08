"""Our indicator functions against independent reference values (StockCharts spreadsheets) and ta.

Tolerances: the StockCharts sheets print 6-10 significant digits, so values are compared with
an absolute tolerance of about half a unit of the last printed digit (stated per test). Against
``ta`` 0.11 (whose formulas the numpy kernels re-implement) the match is to 1e-9 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ta

from stockml.features import indicators as ind

pytestmark = pytest.mark.shared_data


def cs(shared_data: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(shared_data / "indicators" / "ta-stockcharts" / f"cs-{name}.csv")


def both_defined(ours: np.ndarray, ref: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ref_values = pd.to_numeric(ref, errors="coerce").to_numpy(dtype="float64")
    mask = np.isfinite(ref_values) & np.isfinite(ours)
    assert mask.sum() >= 5, "the comparison must cover several rows"
    return ours[mask], ref_values[mask]


def test_sma_and_bollinger_match_stockcharts(shared_data: Path) -> None:
    # GIVEN the StockCharts Bollinger sheet (20-day SMA, population std, 2 std bands)
    ref = cs(shared_data, "bbands")
    # WHEN our functions run on its closes
    mid, upper, lower, pband, width = ind.bollinger(ref["Close"], 20, 2.0)
    # THEN every printed value matches to its 6 printed decimals
    for ours, col in [
        (ind.sma(ref["Close"], 20), "MiddleBand"),
        (mid, "MiddleBand"),
        (upper, "HighBand"),
        (lower, "LowBand"),
        (pband, "PercentageBand"),
        (width, "WidthBand"),
    ]:
        a, b = both_defined(ours, ref[col])
        np.testing.assert_allclose(a, b, atol=5e-6, err_msg=col)
    # and the warm-up rows are undefined, not zero
    assert np.isnan(mid[:19]).all() and np.isfinite(mid[19:]).all()


def test_ema_and_macd_match_stockcharts(shared_data: Path) -> None:
    # GIVEN the MACD sheet: EMA12, EMA26, MACD line, signal (EMA9 of the line), histogram
    ref = cs(shared_data, "macd")
    # WHEN
    line, signal, hist = ind.macd(ref["Close"], 12, 26, 9)
    # THEN the EMAs match once defined (the sheet starts its EMAs at the first close, as we do)
    for ours, col in [
        (ind.ema(ref["Close"], 12), "short_ema"),
        (ind.ema(ref["Close"], 26), "long_ema"),
        (line, "MACD_line"),
    ]:
        a, b = both_defined(ours, ref[col])
        np.testing.assert_allclose(a, b, atol=1e-8, err_msg=col)
    # the sheet starts its signal EMA at the line's SECOND row (where the line is first printed,
    # while its long EMA is still warming up); ta and we start it once the line is defined
    # (row 26 - 1), so the two differ at first and converge by (1 - 2/10)^k
    gap = np.abs(signal - pd.to_numeric(ref["MACD_signal"], errors="coerce").to_numpy())
    assert gap[33] > 0.01
    late = np.arange(len(ref)) >= 90
    np.testing.assert_allclose(signal[late], ref["MACD_signal"][late], atol=1e-6)
    np.testing.assert_allclose(hist[late], ref["MACD_diff"][late], atol=1e-6)


def test_rsi_matches_the_sheet_and_differs_from_sma_seeding_only_at_the_start(
    shared_data: Path,
) -> None:
    # GIVEN the RSI sheet; its averages start at the first change (Avg Gain 0.00425 = 0.0595 / 14
    # on the 3rd row), the EWM seeding ta uses, not ChartSchool's mean of the first 14 changes
    ref = cs(shared_data, "rsi")
    close = ref["Close"].to_numpy()
    # WHEN
    ours = ind.rsi(close, 14)
    # THEN it matches the sheet to its 6 printed decimals
    a, b = both_defined(ours, ref["RSI"])
    np.testing.assert_allclose(a, b, atol=5e-6)
    # AND ChartSchool's seeding (the mean of the first 14 changes, then Wilder) gives its
    # published first RSI, 70.53, where the EWM seeding gives 71.86
    assert classic_rsi(close)[14] == pytest.approx(70.53, abs=0.005)
    assert ours[14] == pytest.approx(71.86, abs=0.005)


def classic_rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """ChartSchool's RSI: averages seeded by the simple mean of the first n changes."""
    change = np.diff(close)
    gain, loss = np.maximum(change, 0), np.maximum(-change, 0)
    out = np.full(len(close), np.nan)
    avg_g, avg_l = gain[:n].mean(), loss[:n].mean()
    out[n] = 100 - 100 / (1 + avg_g / avg_l)
    for i in range(n, len(change)):
        avg_g, avg_l = (avg_g * (n - 1) + gain[i]) / n, (avg_l * (n - 1) + loss[i]) / n
        out[i + 1] = 100 - 100 / (1 + avg_g / avg_l)
    return out


def test_rsi_seedings_converge_on_a_long_series(msft_bars: pd.DataFrame) -> None:
    # GIVEN 600 real closes
    close = msft_bars["close"].to_numpy()[-600:]
    # WHEN both seedings run
    gap = np.abs(classic_rsi(close) - ind.rsi(close))
    # THEN they differ only in the first rows: the start-up effect decays by (13/14)^k
    assert gap[14] > 1e-3
    assert np.nanmax(gap[300:]) < 1e-6


def test_atr_matches_stockcharts_and_ta(shared_data: Path) -> None:
    # GIVEN the ATR sheet: first TR = high - low, ATR seeded by the mean of 14 TRs, then Wilder
    # (cs-atr2 is the same data with a 10-day window)
    for name, n in (("atr", 14), ("atr2", 10)):
        ref = cs(shared_data, name)
        # WHEN
        tr = ind.true_range(ref["High"], ref["Low"], ref["Close"])
        ours = ind.atr(ref["High"], ref["Low"], ref["Close"], n)
        # THEN
        np.testing.assert_allclose(tr, ref["TR"], atol=1e-9)
        a, b = both_defined(ours, ref["ATR"].where(ref["ATR"] != 0))
        np.testing.assert_allclose(a, b, atol=5e-9)
        # ta loops in Python and reports 0 in the warm-up; after it, the values agree
        theirs = ta.volatility.average_true_range(
            ref["High"], ref["Low"], ref["Close"], n
        ).to_numpy()
        assert (theirs[: n - 1] == 0).all() and np.isnan(ours[: n - 1]).all()
        np.testing.assert_allclose(ours[n - 1 :], theirs[n - 1 :], rtol=1e-12)


def test_obv_roc_stochastic_match_stockcharts(shared_data: Path) -> None:
    # GIVEN the OBV, ROC and stochastic sheets
    obv_ref = cs(shared_data, "obv")
    roc_ref = cs(shared_data, "roc")
    soo_ref = cs(shared_data, "soo")
    # WHEN / THEN: OBV (the sheet starts at 0 on its first, volume-less row)
    ours = ind.obv(obv_ref["Close"], obv_ref["Volume"].fillna(0))
    a, b = both_defined(ours, obv_ref["OBV"])
    np.testing.assert_allclose(a, b, atol=0.5)
    # ROC(12) in percent, printed to 8 decimals
    a, b = both_defined(ind.roc(roc_ref["Close"], 12), roc_ref["ROC"])
    np.testing.assert_allclose(a, b, atol=5e-8)
    # %K(14) and %D(3), printed to 5-6 decimals
    k, d = ind.stochastic(soo_ref["High"], soo_ref["Low"], soo_ref["Close"], 14, 3)
    a, b = both_defined(k, soo_ref["SO"])
    np.testing.assert_allclose(a, b, atol=5e-6)
    a, b = both_defined(d, soo_ref["SO_SIG"])
    np.testing.assert_allclose(a, b, atol=5e-5)


def test_bollinger_against_mplfinance_spy_which_uses_the_sample_std(shared_data: Path) -> None:
    # GIVEN mplfinance's SPY sheet with 20-day, 2-std bands on the close
    ref = pd.read_csv(
        shared_data / "indicators" / "mplfinance" / "SPY_20110701_20120630_Bollinger.csv"
    )
    # WHEN
    mid, upper, lower, _, _ = ind.bollinger(ref["Close"], 20, 2.0)
    # THEN its bands are ours widened by sqrt(20/19): mplfinance's example uses pandas' default
    # sample std (ddof=1), StockCharts and ta the population std (ddof=0)
    widen = np.sqrt(20 / 19)
    for ours, col in [
        (mid + (upper - mid) * widen, "UpperB"),
        (mid - (mid - lower) * widen, "LowerB"),
    ]:
        a, b = both_defined(ours, ref[col])
        np.testing.assert_allclose(a, b, rtol=1e-9, err_msg=col)
    a, b = both_defined(upper, ref["UpperB"])
    assert np.abs(a - b).max() > 0.1  # unscaled, the two conventions really differ


def test_numpy_kernels_equal_ta_on_a_real_series(msft_bars: pd.DataFrame) -> None:
    # GIVEN 2000 real MSFT bars
    bars = msft_bars.iloc[-2000:].reset_index(drop=True)
    high, low, close, volume = bars["high"], bars["low"], bars["close"], bars["volume"]
    # WHEN / THEN each kernel equals ta 0.11 wherever ta defines a value
    pairs = {
        "sma": (ind.sma(close, 20), ta.trend.sma_indicator(close, 20)),
        "ema": (ind.ema(close, 50), ta.trend.ema_indicator(close, 50)),
        "rsi": (ind.rsi(close, 14), ta.momentum.rsi(close, 14)),
        "macd": (ind.macd(close)[0], ta.trend.macd(close)),
        "macd_signal": (ind.macd(close)[1], ta.trend.macd_signal(close)),
        "pband": (ind.bollinger(close)[3], ta.volatility.bollinger_pband(close)),
        "wband": (ind.bollinger(close)[4], ta.volatility.bollinger_wband(close)),
        "roc": (ind.roc(close, 10), ta.momentum.roc(close, 10)),
        "stoch": (ind.stochastic(high, low, close)[0], ta.momentum.stoch(high, low, close)),
        "stoch_d": (
            ind.stochastic(high, low, close)[1],
            ta.momentum.stoch_signal(high, low, close),
        ),
        "obv": (ind.obv(close, volume), ta.volume.on_balance_volume(close, volume)),
    }
    for name, (ours, theirs) in pairs.items():
        theirs = theirs.to_numpy(dtype="float64")
        mask = np.isfinite(theirs)
        assert mask.sum() > 1900, name
        np.testing.assert_allclose(ours[mask], theirs[mask], rtol=1e-9, atol=1e-12, err_msg=name)
