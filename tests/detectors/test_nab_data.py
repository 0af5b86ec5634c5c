"""Loading NAB-format corpora: files, windows, probationary periods, profiles, results."""
import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors.nab.corpus import (
    NABCorpus,
    load_nab_corpus,
    load_reference_scores,
    list_result_detectors,
    probationary_length,
    read_results,
    write_results,
)

TAXI = "realKnownCause/nyc_taxi.csv"
SMALL = "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"


@functools.lru_cache(maxsize=1)
def _load(path):
    return load_nab_corpus(path)


@pytest.fixture
def corpus(nab_dir):
    return _load(nab_dir)


def small_copy(nab_dir, tmp_path):
    """A one-file corpus folder to break in various ways."""
    root = tmp_path / "nab"
    (root / "data" / "realAWSCloudwatch").mkdir(parents=True)
    shutil.copy(nab_dir / "data" / SMALL, root / "data" / SMALL)
    (root / "labels").mkdir()
    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(json.dumps({SMALL: windows[SMALL]}))
    shutil.copytree(nab_dir / "config", root / "config")
    return root


def test_corpus_holds_the_35_files_keyed_by_nab_names(corpus):
    assert isinstance(corpus, NABCorpus)
    assert len(corpus) == 35
    assert TAXI in corpus
    assert {name.split("/")[0] for name in corpus} == {
        "artificialNoAnomaly", "artificialWithAnomaly", "realKnownCause", "realAWSCloudwatch",
    }
    assert corpus.n_windows == 55


def test_a_file_is_a_time_indexed_series_with_its_windows(corpus):
    taxi = corpus[TAXI]
    assert taxi.category == "realKnownCause"
    assert isinstance(taxi.values.index, pd.DatetimeIndex)
    assert len(taxi) == 10320
    assert taxi.values.iloc[0] == 10844.0
    assert taxi.timestamps[0] == pd.Timestamp("2014-07-01 00:00:00")
    assert len(taxi.windows) == 5
    assert taxi.window_bounds[0] == (5839, 6045)
    labels = taxi.labels
    assert labels.shape == (10320,)
    assert labels.sum() == sum(end - start + 1 for start, end in taxi.window_bounds)
    assert labels[5838] == 0 and labels[5839] == 1 and labels[6045] == 1 and labels[6046] == 0


def test_file_order_is_kept_when_timestamps_repeat(corpus):
    """NAB keeps the daylight-saving duplicates of some files in file order."""
    data_file = corpus["realKnownCause/ec2_request_latency_system_failure.csv"]
    assert not data_file.timestamps.is_unique
    raw = pd.read_csv(corpus.root / "data" / data_file.name)
    np.testing.assert_array_equal(data_file.values.to_numpy(), raw["value"].to_numpy())


@pytest.mark.parametrize(
    "n_rows, expected",
    [(0, 0), (1243, 186), (4032, 604), (4730, 709), (5000, 750), (7267, 750), (22695, 750)],
)
def test_probationary_length_follows_nab(n_rows, expected):
    """NAB: min(floor(0.15 n), 0.15 * 5000)."""
    assert probationary_length(n_rows) == expected


def test_probationary_length_of_loaded_files(corpus):
    assert corpus[TAXI].probationary_length == 750
    assert corpus[SMALL].probationary_length == 186


def test_probationary_length_rejects_bad_percent():
    with pytest.raises(ValueError, match="probationary_percent"):
        probationary_length(100, 1.5)


def test_profiles_are_read(corpus):
    assert set(corpus.profiles) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    standard = corpus.profile("standard")
    assert (standard.tp_weight, standard.fp_weight, standard.fn_weight) == (1.0, 0.11, 1.0)
    assert corpus.profile("reward_low_FP_rate").fp_weight == 0.22
    assert corpus.profile("reward_low_FN_rate").fn_weight == 2.0
    with pytest.raises(ValueError, match="profile must be one of"):
        corpus.profile("lenient")


def test_file_filter_takes_names_and_patterns(nab_dir):
    corpus = load_nab_corpus(nab_dir, files=[TAXI, "artificialNoAnomaly/*"])
    assert sorted(corpus) == sorted([TAXI] + [n for n in _load(nab_dir) if n.startswith("artificialNo")])
    with pytest.raises(ValueError, match="matches no file"):
        load_nab_corpus(nab_dir, files=["nothing/here.csv"])


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus folder not found"):
        load_nab_corpus(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no data/ folder"):
        load_nab_corpus(tmp_path)


def test_missing_windows_file_is_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    (root / "labels" / "combined_windows.json").unlink()
    with pytest.raises(FileNotFoundError, match="windows file not found"):
        load_nab_corpus(root)


def test_malformed_windows_json_is_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    (root / "labels" / "combined_windows.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_nab_corpus(root)


def test_file_without_windows_entry_is_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    (root / "labels" / "combined_windows.json").write_text("{}")
    with pytest.raises(ValueError, match="no entry for data file"):
        load_nab_corpus(root)


def test_window_limit_not_in_data_is_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    bad = {SMALL: [["2014-04-10 07:13:21.000000", "2014-04-11 16:45:00.000000"]]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="is not a timestamp of the file"):
        load_nab_corpus(root)


def test_bad_data_file_is_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    (root / "data" / SMALL).write_text("time,val\n2014-01-01,1\n")
    with pytest.raises(ValueError, match="must have columns timestamp,value"):
        load_nab_corpus(root)


def test_malformed_profiles_are_a_clear_error(nab_dir, tmp_path):
    root = small_copy(nab_dir, tmp_path)
    (root / "config" / "profiles.json").write_text(json.dumps({"standard": {"tpWeight": 1}}))
    with pytest.raises(ValueError, match="CostMatrix"):
        load_nab_corpus(root)


def test_reference_results_are_read_and_checked(nab_dir, corpus):
    assert list_result_detectors(nab_dir / "results") == ["ARTime", "numenta", "random", "windowedGaussian"]
    results = read_results(nab_dir / "results", "numenta", corpus)
    assert set(results) == set(corpus)
    assert len(results[TAXI]) == len(corpus[TAXI])
    assert {"anomaly_score", "S(t)_standard"} <= set(results[TAXI].columns)
    with pytest.raises(FileNotFoundError, match="no results of detector 'nobody'"):
        read_results(nab_dir / "results", "nobody", corpus)


def test_results_are_written_in_nab_layout_and_read_back(corpus, tmp_path):
    data_file = corpus[SMALL]
    scores = np.linspace(0.0, 1.0, len(data_file))
    path = write_results(tmp_path, "mine", data_file, scores)
    assert path == tmp_path / "mine" / "realAWSCloudwatch" / "mine_iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
    frame = read_results(tmp_path, "mine", corpus.subset([SMALL]))[SMALL]
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
    np.testing.assert_array_equal(frame["anomaly_score"].to_numpy(), scores)
    np.testing.assert_array_equal(frame["label"].to_numpy(), data_file.labels)
    with pytest.raises(ValueError, match="anomaly_scores must have shape"):
        write_results(tmp_path, "mine", data_file, scores[:-1])


def test_results_with_wrong_length_are_rejected(corpus, tmp_path):
    data_file = corpus[SMALL]
    write_results(tmp_path, "mine", data_file, np.zeros(len(data_file)))
    path = tmp_path / "mine" / "realAWSCloudwatch" / "mine_iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
    frame = pd.read_csv(path)
    frame.iloc[:-1].to_csv(path, index=False)
    with pytest.raises(ValueError, match="rows but the data file has"):
        read_results(tmp_path, "mine", corpus.subset([SMALL]))


def test_reference_scores_are_read(nab_dir, tmp_path):
    reference = load_reference_scores(nab_dir)
    assert reference["fixed_thresholds"]["numenta"]["standard"] == 66.47
    assert load_reference_scores(tmp_path) is None
