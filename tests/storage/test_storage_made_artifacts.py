"""What storage accepts of the artifacts AdvEx makes itself: report pages
(UTF-8 HTML), per-sample outcomes (an npz of packed bits) and shards (an npz
of one attack's records on a range of samples). Made and
stored for real: tests/mesh/test_mesh_report_page.py, test_mesh_cli.py."""

from __future__ import annotations

import numpy as np
import pytest

from advex.storage.verify import VerificationError, verify_outcomes, verify_report, verify_shard


def _outcomes(path, samples=10, clean=None, adversarial=None, **extra):
    np.savez(path, samples=np.array(samples, dtype=np.int64),
             clean_correct=np.zeros(2, np.uint8) if clean is None else clean,
             adversarial_correct=np.zeros((3, 2), np.uint8) if adversarial is None else adversarial, **extra)
    return path


def test_outcomes_as_the_gateway_writes_them_pass(tmp_path):
    assert verify_outcomes(_outcomes(tmp_path / "o.npz")) is None


@pytest.mark.parametrize("change, phrase", [
    (dict(samples=0), "samples must be one int64 >= 1"),
    (dict(clean=np.zeros(3, np.uint8)), r"clean_correct must be uint8 of shape \(2,\)"),
    (dict(adversarial=np.zeros((3, 2), np.int64)), r"adversarial_correct must be uint8 of shape \(attacks, 2\)"),
    (dict(labels=np.zeros(10)), "holds exactly samples, clean_correct and adversarial_correct"),
    (dict(adversarial=np.array([{"a": 1}], dtype=object)), "without pickles"),
])
def test_anything_else_is_refused(tmp_path, change, phrase):
    with pytest.raises(VerificationError, match=phrase):
        verify_outcomes(_outcomes(tmp_path / "o.npz", **change))


def test_compressed_outcomes_are_refused_before_anything_inflates(tmp_path):
    path = tmp_path / "o.npz"
    np.savez_compressed(path, samples=np.array(10, dtype=np.int64), clean_correct=np.zeros(2, np.uint8),
                        adversarial_correct=np.zeros((3, 2), np.uint8))
    with pytest.raises(VerificationError, match="stored, not compressed"):
        verify_outcomes(path)


def test_a_report_page_is_utf8_html(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<!DOCTYPE html><html><body>é</body></html>", encoding="utf-8")
    assert verify_report(page) is None
    page.write_bytes(b"<!DOCTYPE html>\xff\xfe")
    with pytest.raises(VerificationError, match="UTF-8"):
        verify_report(page)
    page.write_bytes(b"PK\x03\x04 not a page")
    with pytest.raises(VerificationError, match="starting with <!DOCTYPE html>"):
        verify_report(page)


def _saved(tmp_path, name, build):
    import keras

    path = tmp_path / f"{name}.keras"
    build(keras).save(path)
    return path


def test_models_with_two_inputs_or_outputs_are_refused_at_upload(tmp_path):
    from advex.storage.verify import verify_model

    def two_inputs(keras):
        a, b = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
        return keras.Model([a, b], keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))

    def two_outputs(keras):
        x = keras.Input((8, 8, 1))
        flat = keras.layers.Flatten()(x)
        return keras.Model(x, [keras.layers.Dense(10)(flat), keras.layers.Dense(3)(flat)])

    def one_of_each(keras):
        x = keras.Input((8, 8, 1))
        return keras.Model(x, keras.layers.Dense(10)(keras.layers.Flatten()(x)))

    with pytest.raises(VerificationError, match="the model has 2 inputs; AdvEx evaluates classifiers with one"):
        verify_model(_saved(tmp_path, "in2", two_inputs))
    with pytest.raises(VerificationError, match="the model has 2 outputs"):
        verify_model(_saved(tmp_path, "out2", two_outputs))
    assert verify_model(_saved(tmp_path, "ok", one_of_each)).model_class == "Functional"


def _shard(path, n=4, classes=3, **change):
    arrays = dict(
        first_sample=np.array(8, np.int64), labels=np.zeros(n, np.int64),
        clean_probabilities=np.full((n, classes), 1 / classes, np.float32),
        adversarial_probabilities=np.full((n, classes), 1 / classes, np.float32),
        perturbation_linf=np.zeros(n, np.float32), perturbation_l2=np.zeros(n, np.float32),
        perturbation_l0=np.zeros(n, np.float32),
    )
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_a_shard_as_the_gateway_writes_it_passes(tmp_path):
    assert verify_shard(_shard(tmp_path / "s.npz")) is None
    with_images = _shard(tmp_path / "i.npz", targets=np.ones(4, np.int64),
                         adversarial_images=np.zeros((4, 2, 2, 1), np.float32),
                         example_samples=np.arange(2), example_clean=np.zeros((2, 2, 2, 1), np.float16))
    assert verify_shard(with_images) is None


@pytest.mark.parametrize("change, phrase", [
    (dict(script=np.zeros(1)), "holds no member 'script.npy'"),
    (dict(labels=np.array([{"a": 1}] * 4, dtype=object)), "object"),
    (dict(labels=np.zeros(4, np.float32)), "labels has dtype float32"),
    (dict(perturbation_l2=np.zeros(5, np.float32)), "perturbation_l2 has"),
    (dict(perturbation_l0=None), "lacks perturbation_l0"),
])
def test_a_shard_with_anything_else_is_refused(tmp_path, change, phrase):
    with pytest.raises(VerificationError, match=phrase):
        verify_shard(_shard(tmp_path / "s.npz", **change))
