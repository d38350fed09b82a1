"""GPS through the real trainer on Cora (public split): test accuracy at the best validation epoch."""

from __future__ import annotations

from gnnsys.train import TrainConfig, train

# Per-seed groups with exact attention: each training node attends over its own sampled 2-hop
# neighbourhood (at most 32 tokens); Cora's 140 labels need heavy input dropout.
GPS_CORA = {"local": "gine", "attention": "exact", "attn_group": "seed", "group_size": 32, "pe": "rwse",
            "pe_dim": 8, "hidden": 64, "heads": 4, "input_dropout": 0.8, "dropout": 0.5, "attn_dropout": 0.5}


def test_gps_reaches_075_on_cora(cora, tmp_path):
    cfg = TrainConfig(dataset=str(cora.path), model="gps", model_options=GPS_CORA, fanouts=[10, 10],
                      batch_size=140, epochs=30, lr=0.005, weight_decay=5e-4, eval_every=2,
                      eval_batch_size=1024, seed=0, num_threads=1, progress=False, out=str(tmp_path / "run"))
    summary = train(cfg)
    print("GPS Cora", summary["best_valid"], summary["test_at_best_valid"], summary["mean_epoch_seconds"])
    assert summary["eval_mode"] == "sampled"
    assert summary["test_at_best_valid"] >= 0.75, summary
