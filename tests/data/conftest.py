"""Small seeded tables for the data-source tests."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED_DATA

CENSUS_FILE = SHARED_DATA / "census-income.test.gz"


def customer_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Numeric, text, small-int and boolean features with gaps; three kinds of target."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, rows).round(1)
    age[rng.random(rows) < 0.1] = np.nan
    city = rng.choice(["Lyon", "Oslo", "Quito"], rows).astype(object)
    city[rng.random(rows) < 0.1] = None
    plan = rng.integers(1, 4, rows)
    score = rng.normal(0, 1, rows)
    spend = 3 * score + (plan == 2) + rng.normal(0, 0.1, rows)
    spend[rng.random(rows) < 0.3] = np.nan  # partially labelled task
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "age": age,
            "city": city,
            "plan": plan,
            "premium": rng.random(rows) < 0.5,
            "score": score,
            "churn": np.where(score + rng.normal(0, 0.5, rows) > 0, "yes", "no"),
            "segment": np.array(["a", "b", "c"])[plan - 1],
            "spend": spend,
        }
    )


@pytest.fixture
def customers():
    return customer_table()


@pytest.fixture
def customers_csv(tmp_path, customers):
    path = tmp_path / "customers.csv"
    customers.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def census_head(tmp_path_factory):
    """The first 400 rows of the shared census file, gzipped, in a temporary folder."""
    if not CENSUS_FILE.exists():
        pytest.skip(f"{CENSUS_FILE} is not at hand")
    path = tmp_path_factory.mktemp("census") / "census-head.gz"
    with gzip.open(CENSUS_FILE, "rt") as source, gzip.open(path, "wt") as target:
        for _, line in zip(range(400), source):
            target.write(line)
    return path


@pytest.fixture
def run_table(cli, storage_url):
    """``mtl-search run`` of one trial on a table file, with extra arguments."""

    def run(path, *extra):
        return cli("run", "--data-file", str(path), "--storage", storage_url, "--trials", "1", "--quiet", *extra)

    return run
