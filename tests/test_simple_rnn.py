"""simple_rnn.py: the hand computation, unrolling, states, masking, the run."""

import json
import math

import numpy as np
import pytest

import simple_rnn as lesson


@pytest.fixture
def weights():
    return lesson.random_weights(np.random.default_rng(0), features=3, units=5)


def test_hand_rnn_on_a_hand_worked_example():
    # One unit, two steps: h0 = tanh(1*0.5 + 0.2), h1 = tanh(2*0.5 + 0.1*h0 + 0.2)
    x = np.array([[[1.0], [2.0]]], dtype="float32")  # (1, 2, 1)
    out = lesson.hand_rnn(x, np.array([[0.5]]), np.array([[0.1]]), np.array([0.2]))
    h0 = math.tanh(0.7)
    h1 = math.tanh(1.2 + 0.1 * h0)
    assert out.shape == (1, 2, 1)
    np.testing.assert_allclose(out[0, :, 0], [h0, h1], rtol=1e-6)


def test_keras_simple_rnn_agrees_with_the_hand_computation():
    x, weights, by_hand, by_keras = lesson.compare_with_keras(
        np.random.default_rng(42), units=5
    )
    assert x.shape == (4, 2, 3)  # (batch, time, features), the classic batch
    assert by_hand.shape == by_keras.shape == (4, 2, 5)  # (batch, time, units)
    assert np.all(weights[2] != 0)  # the bias takes part
    assert np.max(np.abs(by_hand - by_keras)) < 1e-5
    assert np.max(np.abs(by_hand)) > 0.5  # not a trivially tiny output


def test_unrolled_equals_looped(weights):
    diff, timings = lesson.compare_unrolling(
        np.random.default_rng(1), weights, timing_steps=20, repeats=1
    )
    assert diff < 1e-6
    for outputs, trace_seconds, call_seconds in timings.values():
        assert outputs.shape == (32, 20, 5)  # (32, timing_steps, units)
        assert trace_seconds > 0 and call_seconds > 0


def test_state_shapes_of_the_three_layers():
    shapes = lesson.state_shapes(units=5, batch_size=4, seq_length=7, features=3)
    assert shapes["SimpleRNN"] == {
        "default": (4, 5),
        "return_sequences": (4, 7, 5),
        "states": [(4, 5)],
    }
    assert shapes["GRU"]["states"] == [(4, 5)]
    assert shapes["LSTM"]["states"] == [(4, 5), (4, 5)]  # h and c
    assert shapes["LSTM"]["return_sequences"] == (4, 7, 5)


def test_mask_from_lengths_keeps_an_all_zero_real_step(weights):
    lengths = [4, 1, 3, 2]
    x = lesson.padded_batch(np.random.default_rng(3), lengths, max_length=4)
    assert x.shape == (4, 4, 3)  # (batch, time, features)
    assert np.all(x[2, 0] == 0)  # a real step of zeros
    outputs, state, mask = lesson.run_masked(weights, x, lengths)
    assert outputs.shape == (4, 4, 5) and state.shape == (4, 5)
    assert mask.shape == (4, 4)
    assert mask.sum(axis=1).tolist() == lengths
    for i, length in enumerate(lengths):
        # The final state is the hand computation over the real steps only.
        expected = lesson.hand_rnn(x[i : i + 1, :length], *weights)[0, -1]
        np.testing.assert_allclose(state[i], expected, atol=1e-5)
        np.testing.assert_allclose(outputs[i, length - 1], state[i], atol=1e-6)
        # At padded steps Keras repeats the last real output.
        for t in range(length, 4):
            np.testing.assert_allclose(outputs[i, t], state[i], atol=1e-6)
    zero_masked = lesson.run_zero_masking(weights, x)
    assert zero_masked.shape == (4, 5)
    np.testing.assert_allclose(zero_masked[[0, 1, 3]], state[[0, 1, 3]], atol=1e-5)
    assert np.max(np.abs(zero_masked[2] - state[2])) > 1e-4  # the real zero step


def test_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        lesson.main(["--units", "0"])
    assert exit_info.value.code == 2
    assert "--units must be at least 1" in capsys.readouterr().err


def test_old_tensorflow_gets_one_plain_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lesson.tf, "__version__", "2.15.1")
    out = tmp_path / "output"
    code = lesson.main(["--output-dir", str(out), "--log-dir", str(tmp_path / "l")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: found TensorFlow 2.15.1 with Keras "
        f"{lesson.keras.__version__}; these lessons need TensorFlow 2.16 or newer "
        "with Keras 3: pip install -U 'tensorflow>=2.16'"
    ]
    assert not out.exists()


def test_smoke_run_as_a_user(run_script, event_tags, assert_png):
    result = run_script("simple_rnn", "--quick")
    assert result.returncode == 0, result.stderr
    assert "hand vs Keras" in result.stdout
    assert "tensorboard --logdir" in result.stdout
    assert_png(result.run_dir / "hidden_states.png")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["script"] == "simple_rnn"
    assert metrics["run"] == result.run_dir.name
    assert metrics["settings"]["quick"] is True
    assert metrics["results"]["max_abs_diff"] < 1e-5
    assert metrics["results"]["unroll_max_abs_diff"] < 1e-6
    assert math.isfinite(metrics["throughput"]["value"])
    assert metrics["throughput"]["value"] > 0
    tags = event_tags(result.log_dir)
    assert tags["graph"]
    assert {"max_abs_diff", "unroll_max_abs_diff"} <= tags["scalars"]
