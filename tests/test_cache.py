"""Tests of the disc cache (``datasets.cache``) and the synthetic-data glue (``datasets.synthetic``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_extract import toy_spine  # the toy-spine drawer (tests/ is on sys.path under pytest)

from spinenet_lite.datasets.cache import (
    DiscDataset,
    geometries_to_arrays,
    geometry_from_arrays,
    load_cache,
    patient_folds,
    patient_split,
    write_cache,
)
from spinenet_lite.errors import InputError
from spinenet_lite.extract.discs import extract_discs, extract_masks
from spinenet_lite.tasks import TASK_NAMES


def _toy_arrays(n=12, seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 256, (n, 9, 112, 224), dtype=np.uint8)
    labels = rng.integers(-1, 2, (n, len(TASK_NAMES))).astype(np.int16)
    masks = rng.random((n, len(TASK_NAMES), 9, 112, 224)) < 0.1
    patients = [f"P{i // 6:05d}" for i in range(n)]
    levels = np.arange(n) % 6
    return vol, labels, masks, patients, levels


def test_write_load_round_trip(tmp_path):
    vol, labels, masks, patients, levels = _toy_arrays()
    out = write_cache(tmp_path / "c", vol, labels, true_labels=labels + 1, reread_labels=labels,
                      patients=patients, levels=levels, masks=masks, meta={"note": "toy"})
    ds = load_cache(out)
    assert isinstance(ds, DiscDataset) and len(ds) == 12
    assert isinstance(ds.volumes, np.memmap) and ds.volumes.dtype == np.uint8
    assert ds.volumes.shape == (12, 9, 112, 224)
    assert np.array_equal(ds.labels, labels) and ds.labels.dtype == np.int16
    assert np.array_equal(ds.true_labels, labels + 1)
    assert ds.patients.tolist() == patients and ds.levels.dtype == np.int8
    v = ds.volume(3)
    assert v.dtype == np.float32 and v.shape == (9, 112, 224)
    assert np.allclose(v, vol[3] / 255.0)
    for t, task in enumerate(TASK_NAMES):
        assert np.array_equal(ds.mask(5, task), masks[5, t])
    assert np.array_equal(ds.masks([1, 4], "pfirrmann"), masks[[1, 4], 0])
    assert (out / "masks.npy").exists() and np.load(out / "masks.npy").shape == (12, 6, 9, 112, 28)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_discs"] == 12 and meta["note"] == "toy"
    sub = ds.subset([0, 7])
    assert len(sub) == 2 and sub.patients.tolist() == [patients[0], patients[7]]
    assert np.array_equal(sub.mask(1, "narrowing"), masks[7, 1])
    with pytest.raises(InputError):
        ds.mask(0, "no_such_task")
    with pytest.raises(InputError):
        ds.volume(99)


def test_concat_datasets_keeps_two_cohorts_apart(tmp_path):
    from spinenet_lite.datasets.cache import concat_datasets

    vol, labels, masks, patients, levels = _toy_arrays()
    a = load_cache(write_cache(tmp_path / "a", vol, labels, patients=patients, levels=levels, masks=masks))
    b = load_cache(write_cache(tmp_path / "b", vol[:6], labels[:6] * 0, patients=patients[:6],
                               levels=levels[:6], masks=masks[:6]))
    both = concat_datasets([a, b], ["std", "dec"])
    assert len(both) == 18 and both.volumes.shape == (18, 9, 112, 224)
    # the same id in two cohorts is two patients, and a split keeps each whole
    assert both.patients[0] == "std:P00000" and both.patients[12] == "dec:P00000"
    assert len(np.unique(both.patients)) == 3
    assert np.array_equal(both.labels[12:], labels[:6] * 0) and np.array_equal(both.labels[:12], labels)
    assert np.array_equal(both.mask(13, "narrowing"), masks[1, 1])
    assert [s["name"] for s in both.meta["sources"]] == ["std", "dec"]
    tr, va, te = patient_split(both.patients, seed=0)
    for part in (tr, va, te):
        for pid in np.unique(both.patients[part]):
            assert set(np.flatnonzero(both.patients == pid)) <= set(part)
    nomask = load_cache(write_cache(tmp_path / "c", vol[:6], labels[:6], patients=patients[:6],
                                    levels=levels[:6]))
    assert concat_datasets([a, nomask], ["a", "c"]).packed_masks is None
    with pytest.raises(InputError, match="distinct"):
        concat_datasets([a, b], ["x", "x"])
    with pytest.raises(InputError, match="at least one"):
        concat_datasets([], [])


def test_float_volumes_converted_and_missing_labels(tmp_path):
    vol = np.random.default_rng(1).random((2, 9, 112, 224)).astype(np.float32)
    ds = load_cache(write_cache(tmp_path / "c", vol))
    assert np.abs(ds.volume(0) - vol[0]).max() <= 0.5 / 255 + 1e-6
    assert (ds.labels == -1).all()
    with pytest.raises(InputError, match="no lesion masks"):
        ds.mask(0, "pfirrmann")


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError):
        write_cache(tmp_path / "a", np.zeros((2, 9, 112, 100), np.uint8))
    with pytest.raises(InputError):
        write_cache(tmp_path / "b", np.zeros((2, 9, 112, 224), np.uint8), labels=np.zeros((3, 6)))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep")
    with pytest.raises(InputError, match="not a disc cache"):
        write_cache(tmp_path / "x", np.zeros((1, 9, 112, 224), np.uint8))
    with pytest.raises(InputError, match="meta.json"):
        load_cache(tmp_path / "nothing")


def test_rewrite_removes_stale_files(tmp_path):
    vol, labels, masks, patients, levels = _toy_arrays(6)
    write_cache(tmp_path / "c", vol, labels, masks=masks)
    ds = load_cache(write_cache(tmp_path / "c", vol[:2]))
    assert len(ds) == 2 and ds.packed_masks is None


def test_geometry_saved(tmp_path):
    scan, corners, lesions = toy_spine(np.linspace(0, 20, 7), n_slices=3)
    discs = extract_discs(scan, corners)
    masks = extract_masks(lesions, discs.geometries)
    ds = load_cache(write_cache(tmp_path / "c", discs.volumes, masks=masks, geometries=discs.geometries,
                                levels=discs.level_indices))
    g0, g1 = discs.geometries[3], ds.geometry_of(3)
    assert g1.level == g0.level and g1.angle_deg == pytest.approx(g0.angle_deg)
    m = ds.mask(3, "pfirrmann").astype(np.float32)
    assert np.array_equal(g1.to_scan(m), g0.to_scan(m))
    arr = geometries_to_arrays(discs.geometries)
    assert geometry_from_arrays(arr, 5).mid_slice == discs.geometries[5].mid_slice


def test_patient_split():
    patients = np.repeat([f"P{i:05d}" for i in range(50)], 6)
    tr, va, te = patient_split(patients, seed=3)
    assert len(tr) + len(va) + len(te) == 300
    sets = [set(patients[i]) for i in (tr, va, te)]
    assert [len(s) for s in sets] == [40, 5, 5]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    again = patient_split(patients, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = patient_split(patients, seed=4)
    assert not np.array_equal(other[1], va)
    small = patient_split(patients[:18], seed=0)  # 3 patients
    assert [len(set(patients[:18][i])) for i in small] == [1, 1, 1]
    with pytest.raises(InputError):
        patient_split(patients, 0, fractions=(0.5, 0.5, 0.5))


def _reference_order(patients, seed):
    """The patient order the committed splits were made with: numpy's default_rng permutation."""
    uniq = np.unique(np.asarray(patients).astype(str))
    return uniq[np.random.default_rng(seed).permutation(len(uniq))]


@pytest.mark.parametrize("n_patients, seed", [(3, 0), (10, 1), (50, 3), (257, 0), (2000, 12345)])
def test_patient_split_and_folds_keep_the_committed_splits(n_patients, seed):
    """scikit-learn's GroupKFold, fed the seed's PCG64 stream, cuts the same patients as before."""
    rng = np.random.default_rng(n_patients)
    patients = np.repeat([f"P{i}" for i in range(n_patients)], rng.integers(1, 7, n_patients))
    rng.shuffle(patients)
    order = _reference_order(patients, seed)
    for n_folds in sorted({2, min(5, n_patients), n_patients}):
        expect = [np.sort(np.nonzero(np.isin(patients, g))[0]) for g in np.array_split(order, n_folds)]
        got = patient_folds(patients, n_folds, seed)
        assert [f.tolist() for f in got] == [f.tolist() for f in expect]
    n = len(order)
    n_val = n_test = max(int(round(0.1 * n)), 1)
    cuts = np.split(order, [n - n_val - n_test, n - n_test])
    for part, g in zip(patient_split(patients, seed), cuts):
        assert part.tolist() == np.nonzero(np.isin(patients, g))[0].tolist()


def test_patient_folds_need_two_to_n_folds():
    patients = np.repeat(["a", "b", "c"], 2)
    with pytest.raises(InputError, match="folds"):
        patient_folds(patients, 4, 0)
    with pytest.raises(InputError, match="folds"):
        patient_folds(patients, 1, 0)
    assert [len(x) for x in patient_split(patients[:2], 0)] == [2, 0, 0]  # one patient: all train


@pytest.mark.slow
def test_synthetic_dataset_end_to_end(tmp_path):
    from spinenet_lite.datasets.cache import extract_cohort
    from spinenet_lite.datasets.synthetic import synthetic_dataset
    from spinenet_lite.phantom import load_patient, read_cohort

    ds = synthetic_dataset(2, seed=5, root=tmp_path, workers=1, progress=False)
    assert len(ds) == 12 and sorted(set(ds.patients.tolist())) == ["P00000", "P00001"]
    cohort_dir = tmp_path / "cohorts" / "syn_s5_n2"
    cache_dir = tmp_path / "cache" / "syn_s5_n2"
    assert (cohort_dir / "cohort.json").exists() and (cache_dir / "meta.json").exists()
    cohort = read_cohort(cohort_dir)
    study = load_patient(cohort_dir, "P00001")
    rows = np.nonzero(ds.patients == "P00001")[0]
    assert np.array_equal(ds.labels[rows], study.labels["observed"][ds.levels[rows]])
    assert np.array_equal(ds.true_labels[rows], study.labels["true"][ds.levels[rows]])
    assert np.array_equal(ds.reread_labels[rows], study.labels["reread"][ds.levels[rows]])
    assert len(cohort) == 2
    # the disc itself is every disc's pfirrmann evidence
    assert all(ds.mask(i, "pfirrmann")[4].sum() > 100 for i in range(len(ds)))
    v = ds.volume(0)
    assert 0 <= v.min() and v.max() <= 1 and v[4].any()
    # second call: loaded, not rebuilt
    stamp = (cache_dir / "meta.json").stat().st_mtime_ns
    again = synthetic_dataset(2, seed=5, root=tmp_path, progress=False)
    assert (cache_dir / "meta.json").stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(again.volumes), np.asarray(ds.volumes))
    # parallel extraction gives the same cache
    par = load_cache(extract_cohort(cohort_dir, tmp_path / "par", workers=2, progress=False))
    assert np.array_equal(np.asarray(par.volumes), np.asarray(ds.volumes))
    assert np.array_equal(np.asarray(par.packed_masks), np.asarray(ds.packed_masks))
