"""Reading the real SPIDER subset (skipped when the folder is absent)."""

import numpy as np
import pandas as pd
import pytest

from spinenet_lite.datasets import spider
from spinenet_lite.errors import InputError
from spinenet_lite.tasks import MISSING, TASK_NAMES


def test_label_mapping_on_hand_made_rows():
    df = pd.DataFrame({
        "Pfirrman grade": [1, 5, 9], "UP endplate": [0, 1, 0], "LOW endplate": [1, 0, None],
        "Modic": [0, 2, 1], "Disc narrowing": [0, 1, 3],
    })
    labels = spider.labels_from_gradings(df)
    col = {t: i for i, t in enumerate(TASK_NAMES)}
    assert labels[:, col["pfirrmann"]].tolist() == [0, 4, MISSING]
    assert labels[:, col["narrowing"]].tolist() == [MISSING] * 3
    assert labels[:, col["lower_endplate"]].tolist() == [1, 0, MISSING]
    assert labels[:, col["upper_marrow"]].tolist() == labels[:, col["lower_marrow"]].tolist() == [0, 1, 1]
    assert spider.narrowing_binary(df).tolist() == [0, 1, MISSING]


def test_not_a_spider_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a SPIDER folder"):
        spider.read_gradings(tmp_path)


def test_real_gradings_and_midsag(spider_dir):
    df = spider.read_gradings(spider_dir)
    assert set(df["level"]) <= set(range(6)) and len(df) > 500
    labels = spider.labels_from_gradings(df)
    assert (labels[:, 0] >= 0).mean() > 0.95
    patient = spider.midsag_patients(spider_dir)[0]
    scan = spider.read_midsag(patient, spider_dir)
    assert scan.n_slices == 1 and 0.2 < scan.pixel_spacing[0] < 1.5
    assert 0.0 <= scan.volume.min() and scan.volume.max() <= 1.0 and np.ptp(scan.volume) > 0.5
