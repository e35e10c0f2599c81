"""The paper's claim on the offline default: SA- and LM-initialised classifiers beat random init."""

import pytest

from semiseq import pipeline


@pytest.mark.slow
def test_pretraining_beats_random_init_on_the_default(make_cfg, tmp_path):
    accuracy = {}
    for init in ("random", "lm", "sa"):
        cfg = make_cfg(f"init={init}", "logger=none", "callbacks=none", "trainer.enable_progress_bar=false")
        accuracy[init] = pipeline.finetune(cfg, pipeline.build_corpus(cfg), tmp_path / init)["test/acc"]
    print(accuracy)
    assert accuracy["lm"] >= accuracy["random"] + 0.05, accuracy
    assert accuracy["sa"] >= accuracy["random"] + 0.05, accuracy
