import typing

import pytest

from bench.config import ConfigError, TrainConfig, parse_overrides
from bench.recipes import load_recipe, method_names
from bench.registry import UnknownName


def test_every_shipped_recipe_parses_at_both_sizes():
    for name in method_names():
        for size in ("cpu", "gpu"):
            r = load_recipe(name, size)
            assert r.name == name and r.size == size
            assert isinstance(r.train, TrainConfig)


def test_sizes_differ():
    cpu, gpu = load_recipe("kmeans32", "cpu"), load_recipe("kmeans32", "gpu")
    assert gpu.train.steps > cpu.train.steps
    assert cpu.training == "supervised" and cpu.adapter == "kmeans_cnn"


def test_overrides_are_typed():
    r = load_recipe("kmeans32", "cpu", parse_overrides(["train.lr=3e-4", "train.steps=7", "params.width=8",
                                                       "train.betas=[0.5, 0.9]", "train.amp=false", "train.grad_clip=1"]))
    assert r.train.lr == pytest.approx(3e-4) and isinstance(r.train.lr, float)
    assert r.train.steps == 7 and isinstance(r.train.steps, int)
    assert r.params.width == 8
    assert r.train.betas == (0.5, 0.9)
    assert r.train.amp is False
    assert r.train.grad_clip == 1.0


@pytest.mark.parametrize("item, message", [
    ("train.steps=abc", "--set train.steps: expected int"),
    ("train.steps=1.5", "expected int"),
    ("train.nope=1", "no field 'nope'"),
    ("params.nope=1", "'nope'"),
    ("other.lr=1", "train.<field>, params.<field> or predict.<field>"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("kmeans32", "cpu", parse_overrides([item]))


def write_recipes(tmp_path, text: str):
    d = tmp_path / "methods"
    (d / "training").mkdir(parents=True)
    (d / "training" / "supervised.yaml").write_text("lr: 1.0e-3\n")
    (d / "bad.yaml").write_text(text)
    return d


def test_unknown_key_names_file_and_key(tmp_path, monkeypatch):
    d = write_recipes(tmp_path, "adapter: kmeans_cnn\ntraining: supervised\nparams: {n_colors: 8, colours: 3}\n")
    monkeypatch.setenv("BENCH_RECIPES", str(d))
    with pytest.raises(ConfigError) as exc:
        load_recipe("bad")
    assert str(d / "bad.yaml") in str(exc.value) and "colours" in str(exc.value)


def test_unknown_top_level_and_size_keys(tmp_path, monkeypatch):
    d = write_recipes(tmp_path, "adapter: kmeans_cnn\ntraining: supervised\nsizes: {cpu: {stepz: 3}}\n")
    monkeypatch.setenv("BENCH_RECIPES", str(d))
    with pytest.raises(ConfigError, match="stepz"):
        load_recipe("bad")
    (d / "bad.yaml").write_text("adapter: kmeans_cnn\nlearning: fast\n")
    with pytest.raises(ConfigError, match="learning"):
        load_recipe("bad")


def test_bad_yaml_names_file(tmp_path, monkeypatch):
    d = write_recipes(tmp_path, "adapter: [unclosed\n")
    monkeypatch.setenv("BENCH_RECIPES", str(d))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe("bad")


def test_unknown_method_lists_choices():
    with pytest.raises(UnknownName) as exc:
        load_recipe("kmeans33")
    assert "kmeans32" in str(exc.value)


def test_float_where_int_expected_in_yaml(tmp_path, monkeypatch):
    d = write_recipes(tmp_path, "adapter: kmeans_cnn\ntraining: supervised\nsizes: {cpu: {steps: 2.5}}\n")
    monkeypatch.setenv("BENCH_RECIPES", str(d))
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        load_recipe("bad")


def test_every_numeric_train_field_declares_a_range():
    """A new TrainConfig field gets its range with one line (``ranged(default, low=...)``); this keeps it so."""
    import dataclasses

    from bench.config import field_range

    hints = typing.get_type_hints(TrainConfig)
    numeric = {int, float, int | None, float | None, tuple[float, float]}
    missing = [f.name for f in dataclasses.fields(TrainConfig) if hints[f.name] in numeric and field_range(TrainConfig, f.name) is None]
    assert not missing, f"declare a range (bench.config.ranged) for: {', '.join(missing)}"


@pytest.mark.parametrize("item, message", [
    ("train.steps=0", "--set train.steps=0: out of range: train.steps must be an integer >= 1"),
    ("train.steps=-3", "train.steps must be an integer >= 1"),
    ("train.lr=0", "train.lr must be a number > 0"),
    ("train.lr=nan", "train.lr must be a number > 0"),
    ("train.betas=[0.9, 1.0]", "train.betas must hold numbers in [0, 1)"),
    ("train.grad_clip=0", "train.grad_clip must be a number > 0"),
    ("train.image_size=16", "train.image_size must be an integer >= 32"),
    ("train.num_workers=-1", "train.num_workers must be an integer >= 0"),
    ("params.n_colors=1", "params.n_colors must be an integer in [2, 1024]"),
    ("steps=5", "the key must be train.<field>, params.<field> or predict.<field> (did you mean train.steps?)"),
])
def test_out_of_range_values_name_field_and_range(item, message):
    with pytest.raises(ConfigError) as exc:
        load_recipe("kmeans32", "cpu", parse_overrides([item]))
    assert message in str(exc.value)
    assert load_recipe("kmeans32", "cpu", parse_overrides(["train.grad_clip=null"])).train.grad_clip is None  # unset is allowed


def test_out_of_range_yaml_value_names_the_file(tmp_path, monkeypatch):
    d = write_recipes(tmp_path, "adapter: kmeans_cnn\ntraining: supervised\nsizes: {cpu: {steps: 0}}\n")
    monkeypatch.setenv("BENCH_RECIPES", str(d))
    with pytest.raises(ConfigError, match=r"bad\.yaml: sizes\.cpu: train\.steps = 0 is out of range: must be an integer >= 1"):
        load_recipe("bad")


DECODINGS = {"annealed": "annealed", "argmax": "arg-max", "topk": "top-k", "centroid": "centroid"}


def test_recipe_descriptions_name_the_decoding_their_params_use():
    """`bench list methods` prints each recipe's description: one that names a decoding must name the one its
    params select (kmeans32's said arg-max while it decodes with the annealed mean)."""
    from click.testing import CliRunner

    from bench.cli import main

    listed = {ln.split()[0]: ln for ln in CliRunner().invoke(main, ["list", "methods"]).output.splitlines() if ln.strip()}
    for name in method_names():
        decode = getattr(load_recipe(name).params, "decode", None)
        if decode is None:
            continue
        named = {d for d, word in DECODINGS.items() if word in listed[name].lower()}
        assert named <= {decode}, f"{name}: its description names {named} decoding, its params decode with {decode!r}"
    assert "annealed" in listed["kmeans32"]


def test_kmeans32_palette_settings_are_checked_together():
    from bench.recipes import load_recipe

    with pytest.raises(ConfigError, match="kmeans_pixels 10 is fewer than n_colors 32"):
        load_recipe("kmeans32", "cpu", {"params.kmeans_pixels": "10"})
    with pytest.raises(ConfigError, match=r"params.n_colors must be an integer in \[2, 1024\]"):
        load_recipe("kmeans32", "cpu", {"params.n_colors": "100000"})
