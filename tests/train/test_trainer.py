"""The training engine: schedules, the data stream's splits and order, gradient accumulation, resume."""

import math
import os
import signal

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.testing import CharTokenizer, tiny_model
from prunekit.train import TrainConfig, Trainer, TrainPlugin
from prunekit.train.data import WindowStream, validation_windows
from prunekit.train.schedule import lr_factor

torch.set_num_threads(1)


@pytest.fixture
def corpus(tmp_path):
    """Paragraphs numbered so every window tells where it came from."""
    path = tmp_path / "numbered.txt"
    path.write_text("\n\n".join(f"paragraph {i:04d}: the quick brown fox jumps over the lazy dog." for i in range(600)))
    return str(path)


def test_schedules_match_their_formulas():
    f = lambda step, kind, **kw: lr_factor(step, 100, kind, warmup=kw.get("warmup", 0.1), floor=0.1, decay=0.2)  # noqa: E731
    assert [f(s, "cosine") for s in (0, 9)] == [1 / 11, 10 / 11]  # linear warmup over 10 steps
    assert f(10, "cosine") == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 90)))
    assert f(99, "cosine") == pytest.approx(0.1) and f(99, "linear") == pytest.approx(0.1)
    assert f(54, "linear") == pytest.approx(1 - 0.9 * 45 / 90)
    assert f(79, "wsd") == 1.0 and f(80, "wsd") == pytest.approx(1 - 0.9 / 20) and f(99, "wsd") == pytest.approx(0.1)
    assert f(50, "constant") == 1.0


def _paragraphs(ids):
    text = bytes(ids.flatten().tolist()).decode(errors="replace")
    return {int(part[:4]) for part in text.split("paragraph ")[1:] if part[:4].isdigit()}


def test_training_windows_come_from_the_training_part_only(corpus):
    """600 paragraphs: evaluation = the last 10% (540..599), validation = the last 5% before it."""
    stream = WindowStream(CharTokenizer(256), [corpus], 64, seed=0)
    trained = _paragraphs(stream.windows[0])
    held = _paragraphs(validation_windows(CharTokenizer(256), corpus, 1000, 64))
    assert min(trained) == 0 and 500 < max(trained) < 0.9 * 0.95 * 600 + 1
    assert held and max(trained) <= min(held) and max(held) < 540  # no window reaches the evaluation split


def test_stream_is_deterministic_and_follows_the_weights(tmp_path, corpus):
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(f"line {i} of another text with other words in it." for i in range(600)))
    make = lambda: WindowStream(CharTokenizer(256), [corpus, str(other)], 32, weights=[3, 1], seed=5)  # noqa: E731
    a, b = make(), make()
    for step in range(4):
        ids_a, src_a = a.batch(step, 8)
        ids_b, src_b = b.batch(step, 8)
        assert torch.equal(ids_a, ids_b) and torch.equal(src_a, src_b)
    counts = torch.bincount(torch.cat([a.batch(s, 64)[1] for s in range(4, 20)]), minlength=2).double()
    assert 0.7 < counts[0] / counts.sum() < 0.8  # weights 3:1
    fresh = make()
    fresh.load_state_dict(a.state_dict())
    assert torch.equal(fresh.batch(20, 8)[0], a.batch(20, 8)[0])


def _trainer(model, corpus, checkpoint=None, plugins=(), **overrides):
    corpora = corpus if isinstance(corpus, list) else [corpus]
    config = TrainConfig(**{"tokens": 8 * 4 * 32, "seq_len": 32, "batch_size": 4, "micro_batch_size": 2,
                            "lr": 1e-2, "corpus": corpora, "checkpoint_every": 2, "seed": 3, **overrides})
    params = [(n, p) for n, p in model.named_parameters() if "layers.1" in n]
    for p in model.parameters():
        p.requires_grad_(False)
    for _n, p in params:
        p.requires_grad_(True)

    def loss_fn(ids, _sources):
        logits = model(input_ids=ids).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()), {}

    stream = WindowStream(CharTokenizer(128), config.corpus, config.seq_len, seed=config.seed)
    return Trainer(model, params, config, loss_fn, stream, plugins=plugins, checkpoint=checkpoint)


@pytest.fixture
def ctrl_c():
    """Python's Ctrl-C handler for the test: a process started in the background (nohup, `&`) inherits SIGINT
    ignored, and the interrupt would never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class StopAt(TrainPlugin):
    """Sends this process SIGINT (Ctrl-C) while step `step` updates the weights."""

    def __init__(self, step):
        self.step = step

    def after_step(self, trainer, step):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_run_resumes_to_the_same_weights(corpus, tmp_path, ctrl_c):
    straight = tiny_model("llama", layers=2, seed=1)
    result = _trainer(straight, corpus).fit()
    assert result.steps == 8 and result.tokens == 8 * 4 * 32
    assert result.history[-1]["loss"] < result.history[0]["loss"]

    resumed = tiny_model("llama", layers=2, seed=1)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer(resumed, corpus, checkpoint, plugins=[StopAt(4)]).fit()  # interrupted after step 5
    assert checkpoint.is_file()
    again = _trainer(resumed, corpus, checkpoint, plugins=[StopAt(-1)]).fit()  # the same plug-ins
    assert again.resumed_from == 5 and again.steps == 8 and not checkpoint.exists()
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in again.history] == [h["loss"] for h in result.history]


def test_a_checkpoint_of_other_settings_is_refused(corpus, tmp_path, ctrl_c):
    checkpoint = tmp_path / "ckpt.pt"
    model = tiny_model("llama", layers=2)
    with pytest.raises(KeyboardInterrupt):
        _trainer(model, corpus, checkpoint, plugins=[StopAt(0)]).fit()
    with pytest.raises(ConfigError, match="other settings.*lr"):
        _trainer(model, corpus, checkpoint, lr=5e-3).fit()


class Gradients(TrainPlugin):
    def __init__(self):
        self.seen = []

    def after_backward(self, trainer):
        self.seen.append([p.grad.clone() for _n, p in trainer.parameters])


def test_gradient_accumulation_matches_one_large_batch(corpus):
    grads = []
    for micro in (4, 1):
        probe = Gradients()
        _trainer(tiny_model("llama", layers=2, seed=2), corpus, micro_batch_size=micro, tokens=4 * 32, precision="fp32",
                 plugins=[probe]).fit()
        grads.append(probe.seen[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bad_options_name_the_option_and_the_valid_range():
    for key, value, match in [("tokens", 0, "tokens must be a positive"), ("lr", -1.0, "lr must be > 0"),
                              ("micro_batch_size", 3, "divisor of batch_size"), ("corpus", ["nope"], "nope"),
                              ("schedule", "step", "schedule"), ("weights", [1.0, 2.0], "weights")]:
        with pytest.raises(ConfigError, match=match):
            from_dict(TrainConfig, {key: value}, "train")


def test_dynamic_mixture_follows_sheared_llama_update():
    from prunekit.train.mixture import update_weights

    w = update_weights([0.5, 0.5], losses=[3.0, 2.0], reference=[2.0, 2.5], eta=1.0, smoothing=0.0)
    expected = torch.softmax(torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
                             + torch.tensor([1.0, 0.0], dtype=torch.float64), 0)
    assert w == pytest.approx(expected.tolist())  # the lagging corpus gains, the one ahead of reference is not pushed
    assert update_weights([0.2, 0.8], [1.0, 1.0], [2.0, 2.0], smoothing=0.0) == pytest.approx([0.2, 0.8])
    smoothed = update_weights([1.0, 0.0], [1.0, 1.0], [1.0, 1.0], smoothing=0.1)
    assert smoothed == pytest.approx([0.95, 0.05])  # never starves a corpus


def test_dynamic_mixture_moves_batches_to_the_lagging_corpus(tmp_path, corpus):
    from prunekit.train.mixture import DynamicMixture

    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(f"line {i} of another text with other words in it." for i in range(600)))
    model = tiny_model("llama", layers=2)
    plugin = DynamicMixture([corpus, str(other)], {corpus: 0.0, str(other): 10.0})  # only `corpus` lags
    trainer = _trainer(model, [corpus, str(other)], plugins=[plugin], eval_every=2)
    vocab = CharTokenizer(128)
    held = {c: validation_windows(vocab, c, 2, 32) for c in (corpus, str(other))}

    def validate():
        return {f"val_loss/{c}": torch.nn.functional.cross_entropy(
            model(input_ids=ids).logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).item() for c, ids in held.items()}

    trainer.validate = validate
    trainer.fit()
    assert len(plugin.history) == 5  # validations at steps 0, 2, 4, 6 and 8
    assert plugin.history[0][0] > 0.7 and plugin.history[-1][0] > 0.99  # the lagging corpus takes over
    assert trainer.stream.weights == plugin.history[-1]
