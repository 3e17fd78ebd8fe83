from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from engine.data.calendar import trading_days
from engine.data.sources import BAR_SCHEMA, LocalFileSource
from engine.data.synthetic import SyntheticSource
from engine.errors import SourceDataError
from tests.conftest import write_bars_csv

GOOD = [
    ("AAA", "2024-01-02", 10.0, 11.0, 9.5, 10.5, 10.5, 1000),
    ("AAA", "2024-01-03", 10.5, 11.5, 10.0, 11.0, 11.0, 1200),
]


def test_synthetic_bars_are_the_same_whichever_range_is_asked_for() -> None:
    source = SyntheticSource(n_symbols=5, seed=3)
    one_go = source.daily_bars(date(2023, 1, 1), date(2023, 12, 31))
    later_half = source.daily_bars(date(2023, 7, 1), date(2023, 12, 31))
    assert later_half.equals(one_go.filter(pl.col("ts") >= date(2023, 7, 1)))


def test_synthetic_bars_only_on_trading_days_and_consistent() -> None:
    bars = SyntheticSource(n_symbols=4).daily_bars(date(2024, 12, 20), date(2024, 12, 31))
    assert sorted(set(bars["ts"].to_list())) == trading_days(date(2024, 12, 20), date(2024, 12, 31))
    assert date(2024, 12, 25) not in bars["ts"].to_list()
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert (bars["high"] >= bars["open"]).all() and (bars["high"] >= bars["close"]).all()
    assert (bars["low"] <= bars["open"]).all() and (bars["low"] <= bars["close"]).all()
    assert bars.height == 4 * 7


def test_synthetic_symbols_carry_sectors() -> None:
    source = SyntheticSource(n_symbols=6)
    assert set(source.sectors()) == set(source.symbols())
    assert len(set(source.sectors().values())) == 5


def test_reads_the_real_parquet(real_prices: Path) -> None:
    bars = LocalFileSource(str(real_prices)).daily_bars(date(2019, 1, 1), date(2019, 1, 31))
    assert bars["symbol"].n_unique() > 400
    assert bars["ts"].min() == date(2019, 1, 2) and bars["ts"].max() == date(2019, 1, 31)
    aapl = bars.filter((pl.col("symbol") == "AAPL") & (pl.col("ts") == date(2019, 1, 2)))
    assert aapl.height == 1 and aapl["origin"][0].startswith(f"{real_prices}: row ")


def test_reads_csv_and_names_the_row_of_each_bar(tmp_path: Path) -> None:
    path = write_bars_csv(tmp_path / "bars.csv", GOOD)
    bars = LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars["close"].to_list() == [10.5, 11.0]
    assert bars["origin"].to_list() == [f"{path}: row 1", f"{path}: row 2"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            ("AAA", "2024-01-04", "ten", 11.0, 9.0, 10.0, 10.0, 5),
            r"row 3, column 'open': 'ten' is not a number",
        ),
        (
            ("AAA", "2024/01/04", 10.0, 11.0, 9.0, 10.0, 10.0, 5),
            r"row 3, column 'date': '2024/01/04' is not a date",
        ),
        (
            ("AAA", "2024-01-04", 10.0, 11.0, 9.0, None, 10.0, 5),
            r"row 3, column 'close': value is empty",
        ),
        (
            ("AAA", "2024-01-04", 10.0, 11.0, 9.0, 10.0, 10.0, 1.5),
            r"row 3, column 'volume': not a whole number",
        ),
        (
            ("'; DROP TABLE bars_daily;--", "2024-01-04", 10.0, 11.0, 9.0, 10.0, 10.0, 5),
            r"row 3, column 'symbol'",
        ),
    ],
)
def test_corrupt_file_error_names_file_row_and_column(
    tmp_path: Path, row: tuple, message: str
) -> None:
    path = tmp_path / "corrupt.csv"
    pl.DataFrame(
        [tuple(str(v) if v is not None else None for v in r) for r in [*GOOD, row]],
        schema=["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"],
        orient="row",
    ).write_csv(path)
    with pytest.raises(SourceDataError, match=message) as error:
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert str(path) in str(error.value)


def test_missing_columns_and_missing_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("symbol,date,close\nAAA,2024-01-02,10\n")
    with pytest.raises(SourceDataError, match=r"short.csv: missing column\(s\) open, high, low"):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    with pytest.raises(SourceDataError, match="nowhere.parquet: file not found"):
        LocalFileSource(str(tmp_path / "nowhere.parquet")).daily_bars(
            date(2024, 1, 1), date(2024, 1, 31)
        )


def test_a_folder_of_yahoo_layout_files_reads_symbols_from_file_names(tmp_path: Path) -> None:
    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    (tmp_path / "AAPL.csv").write_text(
        header + "2024-01-02,187.15,188.44,183.89,185.64,184.9,82488700\n"
    )
    (tmp_path / "msft.csv").write_text(
        header + "2024-01-02,373.86,375.9,366.77,370.87,368.4,25258600\n"
    )
    bars = LocalFileSource(str(tmp_path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars.select("symbol", "close", "adj_close", "volume").rows() == [
        ("AAPL", 185.64, 184.9, 82488700),
        ("MSFT", 370.87, 368.4, 25258600),
    ]
    assert bars["origin"].to_list() == [
        f"{tmp_path / 'AAPL.csv'}: row 1",
        f"{tmp_path / 'msft.csv'}: row 1",
    ]


def test_a_yahoo_file_with_a_bad_value_names_the_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,160,162,159,161,158,100\n2024-01-03,null,162,159,161,158,100\n"
    )
    with pytest.raises(
        SourceDataError, match=r"IBM.csv: row 2, column 'open': 'null' is not a number"
    ):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))


def test_synthetic_minute_bars_span_the_session_and_agree_with_the_day() -> None:
    source = SyntheticSource(n_symbols=2, seed=4)
    early = source.minute_bars(date(2024, 11, 29))  # the day after Thanksgiving closes at 13:00
    assert early.height == 2 * 210
    assert early["ts"].max().hour == 17 and early["ts"].max().minute == 59  # 12:59 New York
    full = source.minute_bars(date(2024, 3, 14))
    assert full.height == 2 * 390
    daily = source.daily_bars(date(2024, 3, 14), date(2024, 3, 14))
    per_symbol = (
        full.group_by("symbol")
        .agg(pl.col("open").first(), pl.col("close").last(), pl.col("volume").sum())
        .sort("symbol")
    )
    assert per_symbol["open"].to_list() == pytest.approx(daily["open"].to_list(), rel=1e-12)
    assert per_symbol["close"].to_list() == pytest.approx(daily["close"].to_list(), rel=1e-12)
    assert per_symbol["volume"].to_list() == daily["volume"].to_list()
    assert source.minute_bars(date(2024, 12, 25)).is_empty()


YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def test_a_sectors_csv_in_the_folder_is_the_sectors_not_a_bars_file(tmp_path: Path) -> None:
    (tmp_path / "AAPL.csv").write_text(YAHOO_HEADER + "2024-01-02,187,188,183,185,184,82488700\n")
    (tmp_path / "XOM.csv").write_text(YAHOO_HEADER + "2024-01-02,100,101,99,100.5,99,1000\n")
    (tmp_path / "Sectors.CSV").write_text(
        "symbol,sector\nAAPL,Information Technology\nXOM,Energy\n"
    )
    source = LocalFileSource(str(tmp_path))
    bars = source.daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars["symbol"].to_list() == ["AAPL", "XOM"]
    assert source.sectors() == {"AAPL": "Information Technology", "XOM": "Energy"}
    # A sectors_path given explicitly wins; the folder's sectors.csv is still not bars.
    other = tmp_path.parent / f"{tmp_path.name}-sectors.csv"
    other.write_text("symbol,sector\nAAPL,Tech\n")
    explicit = LocalFileSource(str(tmp_path), sectors_path=str(other))
    assert explicit.sectors() == {"AAPL": "Tech"}
    assert explicit.daily_bars(date(2024, 1, 1), date(2024, 1, 31)).height == 2


def test_the_shared_data_folder_reads_with_its_sectors(real_prices: Path) -> None:
    source = LocalFileSource(str(real_prices.parent))
    bars = source.daily_bars(date(2019, 1, 2), date(2019, 1, 4))
    assert bars["symbol"].n_unique() > 400
    sectors = source.sectors()
    assert sectors["AAPL"] == "Information Technology" and len(sectors) == 503


def test_a_sectors_file_without_its_columns_is_named(tmp_path: Path) -> None:
    (tmp_path / "AAPL.csv").write_text(YAHOO_HEADER + "2024-01-02,187,188,183,185,184,100\n")
    (tmp_path / "sectors.csv").write_text("ticker,industry\nAAPL,Tech\n")
    with pytest.raises(SourceDataError, match=r"sectors.csv: missing column\(s\) symbol, sector"):
        LocalFileSource(str(tmp_path)).sectors()


def _pandas_frame(dates: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAA"] * len(dates),
            "date": dates,
            "open": [10.0] * len(dates),
            "high": [11.0] * len(dates),
            "low": [9.5] * len(dates),
            "close": [10.5] * len(dates),
            "adj_close": [10.5] * len(dates),
            "volume": [1000] * len(dates),
        }
    )


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s"])
def test_parquet_written_by_pandas_with_naive_midnight_datetimes(tmp_path: Path, unit: str) -> None:
    path = tmp_path / "bars.parquet"
    dates = pd.to_datetime(["2024-01-02", "2024-01-03"]).as_unit(unit)
    _pandas_frame(list(dates)).astype({"date": f"datetime64[{unit}]"}).to_parquet(path)
    bars = LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars["ts"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    assert bars.schema == pl.Schema(BAR_SCHEMA)


def test_parquet_written_by_pandas_with_timezone_aware_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    # 21:00 UTC is the 16:00 close in New York; 02:00 UTC on the 4th is still the 3rd there.
    stamps = pd.to_datetime(["2024-01-02 21:00", "2024-01-04 02:00"]).tz_localize("UTC")
    _pandas_frame(list(stamps)).to_parquet(path)
    bars = LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars["ts"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    new_york = pd.to_datetime(["2024-01-02", "2024-01-03"]).tz_localize("America/New_York")
    _pandas_frame(list(new_york)).to_parquet(path)
    bars = LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))
    assert bars["ts"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]


@pytest.mark.parametrize("unit", ["ns", "us"])
def test_a_naive_datetime_with_a_time_of_day_is_refused(tmp_path: Path, unit: str) -> None:
    path = tmp_path / "bars.parquet"
    stamps = pd.to_datetime(["2024-01-02 00:00", "2024-01-03 16:00"]).as_unit(unit)
    _pandas_frame(list(stamps)).astype({"date": f"datetime64[{unit}]"}).to_parquet(path)
    with pytest.raises(
        SourceDataError, match=r"bars.parquet: row 2, column 'date': .* has a time of day"
    ):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))


@pytest.mark.parametrize("volume", ["1e20", "99999999999999999999", "-1e19"])
def test_a_csv_volume_beyond_int64_names_file_row_and_column(tmp_path: Path, volume: str) -> None:
    path = write_bars_csv(
        tmp_path / "big.csv", [*GOOD, ("AAA", "2024-01-04", 10.0, 11.0, 9.0, 10.0, 10.0, volume)]
    )
    with pytest.raises(
        SourceDataError, match=rf"big.csv: row 3, column 'volume': '{volume}' is out of range"
    ):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))


@pytest.mark.parametrize("volume", [1e20, 1.0e19])
def test_a_parquet_float_volume_beyond_int64_names_file_row_and_column(
    tmp_path: Path, volume: float
) -> None:
    path = tmp_path / "big.parquet"
    frame = _pandas_frame([date(2024, 1, 2), date(2024, 1, 3)]).astype({"volume": "float64"})
    frame.loc[1, "volume"] = volume
    frame.to_parquet(path)
    with pytest.raises(
        SourceDataError, match=r"big.parquet: row 2, column 'volume': .* is out of range"
    ):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))


def _folder_with_one_bad_file_and_one_unreadable(folder: Path) -> tuple[Path, Path]:
    (folder / "AAPL.csv").write_text(YAHOO_HEADER + "2024-01-02,187,188,183,185,184,100\n")
    bad = folder / "IBM.csv"
    bad.write_text(YAHOO_HEADER + "2024-01-02,160,162,159,161,158,100\n2024-01-03,x,1,1,1,1,1\n")
    junk = folder / "prices.parquet"
    junk.write_bytes(b"not parquet at all")
    write_bars_csv(folder / "long.csv", GOOD)
    return bad, junk


def test_a_folder_records_its_bad_files_and_returns_the_others(tmp_path: Path) -> None:
    bad, junk = _folder_with_one_bad_file_and_one_unreadable(tmp_path)
    failures: dict[str, str] = {}
    bars = LocalFileSource(str(tmp_path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31), failures)
    assert sorted(set(bars["symbol"])) == ["AAA", "AAPL"]
    assert set(failures) == {"IBM", str(junk)}
    assert failures["IBM"] == f"{bad}: row 2, column 'open': 'x' is not a number"
    assert failures[str(junk)].startswith(f"{junk}: cannot be read")


def test_a_folder_without_failures_still_refuses_a_bad_file(tmp_path: Path) -> None:
    _folder_with_one_bad_file_and_one_unreadable(tmp_path)
    with pytest.raises(SourceDataError, match=r"IBM.csv: row 2, column 'open'"):
        LocalFileSource(str(tmp_path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31))


def test_a_single_file_source_raises_even_when_failures_are_collected(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(YAHOO_HEADER + "2024-01-03,x,1,1,1,1,1\n")
    failures: dict[str, str] = {}
    with pytest.raises(SourceDataError, match=r"IBM.csv: row 1, column 'open'"):
        LocalFileSource(str(path)).daily_bars(date(2024, 1, 1), date(2024, 1, 31), failures)
    assert failures == {}
