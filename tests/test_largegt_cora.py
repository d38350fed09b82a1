"""LargeGT through the real trainer on Cora (public split): test accuracy at the best validation epoch."""

from __future__ import annotations

from gnnsys.train import TrainConfig, train

LARGEGT_CORA = {"num_tokens": 32, "hidden": 64, "global_dim": 32, "num_centroids": 64, "heads": 2,
                "dropout": 0.5}


def test_largegt_reaches_075_on_cora(cora, tmp_path):
    opts = dict(LARGEGT_CORA, cache_dir=str(tmp_path / "cache"))  # the propagated table stays out of the fixture
    cfg = TrainConfig(dataset=str(cora.path), model="largegt", model_options=opts, batch_size=140, epochs=20,
                      lr=0.01, weight_decay=5e-4, eval_every=2, eval_batch_size=1024, seed=0, num_threads=1,
                      progress=False, out=str(tmp_path / "run"))
    summary = train(cfg)
    print("LargeGT Cora", summary["best_valid"], summary["test_at_best_valid"], summary["mean_epoch_seconds"])
    assert summary["test_at_best_valid"] >= 0.75, summary
    assert list((tmp_path / "cache").glob("propagated-*.npy"))
