"""A GridSearchCV sweep on a Dask cluster through joblib's "dask" backend."""

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV, KFold

from conftest import make_blobs, tiny
from skunet.scorers import iou

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_grid_search_on_a_local_cluster_matches_the_local_run():
    X, y = make_blobs(6)
    grid = {"lr": [1e-3, 1e-2], "module__base_channels": [4, 6]}

    def search():
        return GridSearchCV(
            tiny(train_split=None, max_epochs=2), grid, cv=KFold(2), scoring=iou, refit=False
        )

    # Dask workers run one thread each (distributed sets OMP_NUM_THREADS=1); CPU
    # convolutions sum in a thread-dependent order, so the local run uses one too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = search().fit(X, y)
    finally:
        torch.set_num_threads(threads)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        parallel_backend("dask"),
    ):
        on_dask = search().fit(X, y)
        workers = client.run(lambda: torch.get_num_threads())
    assert len(workers) == 2
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=1e-6
    )
    assert on_dask.best_params_ == local.best_params_
