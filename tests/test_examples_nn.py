"""The adtrans.nn examples, shortened, run as tests."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_mlp_prints_losses_and_cotangents_then_converges(capsys):
    xor = load("xor_mlp")
    model, loss, predictions = xor.main(steps=3, convergence_steps=500)
    out = capsys.readouterr().out
    assert out.count("dL/dy_hat =") == 3 and out.count("dL/dlayer1 =") == 3
    assert "step 2: loss" in out
    assert loss < 0.01
    assert ((predictions[:, 0] > 0.5) == np.array([False, True, True, False])).all()


def test_cnn_applies_the_conv_layer_twice_per_step_and_the_loss_falls(capsys):
    cnn = load("cnn_checkpointing")
    _, losses = cnn.main(steps=3)
    out = capsys.readouterr().out
    assert out.count("conv layer applied 2 times") == 3
    assert losses[-1] < losses[0]


def test_fully_connected_three_ways_agree_and_the_classifier_learns(capsys):
    pytest.importorskip("sklearn")
    fc = load("fully_connected")
    accuracy = fc.main(epochs=3, repeat=1)
    out = capsys.readouterr().out
    assert "the three gradients agree" in out
    assert accuracy > 0.9


def test_fully_connected_says_how_to_install_its_data_set(capsys, monkeypatch):
    fc = load("fully_connected")
    monkeypatch.setattr(fc, "load_data", lambda: None)
    assert fc.main() is None
    assert "pip install" in capsys.readouterr().out
