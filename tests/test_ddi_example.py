"""examples/ogbl_ddi_sage.py is OGB's ddi GraphSAGE recipe (examples/linkproppred/ddi/gnn.py
--use_sage): the model it builds has OGB's shapes, and its options are OGB's defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def test_ddi_example_builds_ogbs_model_and_training_options(ddi, tmp_path: Path) -> None:
    from ogbl_ddi_sage import ddi_config

    from gnnsys.train.build import assemble

    cfg = ddi_config(str(ddi.path), None, None, out=str(tmp_path / "run"))
    # OGB: --lr 0.005 --batch_size 65536 --epochs 200 --eval_steps 5 --runs 10, no weight decay,
    # negative_sampling (random non-edge pairs, as many as positives), clip_grad_norm_ 1.0 per part
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.eval_every, cfg.runs, cfg.weight_decay) == (0.005, 65536, 200, 5, 10, 0.0)
    assert (cfg.neg, cfg.num_neg, cfg.grad_clip, cfg.grad_clip_per) == ("random_pairs", 1, 1.0, "part")
    assert cfg.fanouts == [-1, -1] and not cfg.exclude_target_edges and cfg.metric == "hits@20"
    model = assemble(cfg.replace(runs=1)).model
    # emb = Embedding(4267, 256); SAGE(256, 256, 256, num_layers=2); LinkPredictor(256, 256, 1, num_layers=2)
    emb = model.encoder.embedding.weight
    assert tuple(emb.shape) == (4267, 256)
    sage = model.encoder.model
    assert [(c.in_channels, c.out_channels) for c in sage.convs] == [(256, 256), (256, 256)]
    lins = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(256, 256), (256, 1)]
    assert model.decoder.dropout == 0.5 and sage.dropout == 0.5
