import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prunekit.errors import ConfigError
from prunekit.recipe import apply_overrides, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_recipe_is_valid():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert recipe.model == "smollm2-135m"
    assert recipe.evaluation.perplexity.window == 1024


def test_round_trip_between_yaml_and_objects(tmp_path):
    data = {"name": "x", "model": "smollm2-135m",
            "variants": [{"name": "mag", "stages": [{"prune": {"method": "magnitude", "ratio": 0.3}},
                                                    {"save": {}}]}]}
    recipe = parse_recipe(data)
    again = parse_recipe(recipe.to_dict())
    assert again.to_dict() == recipe.to_dict()
    assert again.variants[0].stages[0].options.config.ratio == 0.3


def test_misspelled_method_names_key_and_choices(tmp_path):
    path = write(tmp_path, {"variants": [{"name": "a", "stages": [{"prune": {"method": "magnitud"}}]}]})
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert "variants[0].stages[0].prune.method" in str(err.value)
    assert "magnitude" in str(err.value)


@pytest.mark.parametrize("data, needle", [
    ({"modle": "x"}, "Unknown top-level key 'modle'"),
    ({"calibration": {"sample": 3}}, "Unknown key 'sample' in 'calibration'"),
    ({"calibration": {"samples": "many"}}, "'calibration.samples' must be an integer"),
    ({"evaluation": {"tasks": ["perplexity", "acuracy"]}}, "Unknown task 'acuracy'"),
    ({"calibration": {"corpus": "wikii"}}, "Unknown corpus 'wikii'"),
    ({"model": "smolm2"}, "Unknown model 'smolm2'"),
    ({"variants": [{"name": "a", "stages": [{"prnue": {}}]}]}, "Unknown stage 'prnue'"),
    ({"variants": [{"name": "a", "stages": [{"prune": {"method": "magnitude", "ratio": 1.0}}]}]},
     "ratio (the fraction of weights removed) must be in [0, 1), got 1.0"),
    ({"variants": [{"name": "a", "stages": [{"prune": {"method": "magnitude", "pattern": "5:4"}}]}]},
     "N=5, M=4"),
    ({"variants": [{"name": "dense", "stages": []}]}, "reserved"),
])
def test_bad_recipes_fail_with_a_named_value(tmp_path, data, needle):
    with pytest.raises(ConfigError) as err:
        load_recipe(write(tmp_path, data))
    assert needle in str(err.value)


def test_overrides_set_nested_values_and_list_items():
    data = {"evaluation": {"perplexity": {"windows": 16}}, "variants": [{"name": "a", "stages": []}]}
    out = apply_overrides(data, ["evaluation.perplexity.windows=2", "variants.0.name=b", "calibration.seed=7"])
    assert out["evaluation"]["perplexity"]["windows"] == 2
    assert out["variants"][0]["name"] == "b"
    assert out["calibration"]["seed"] == 7
    assert data["evaluation"]["perplexity"]["windows"] == 16  # the input is not changed
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(data, ["variants.3.name=c"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(data, ["novalue"])


def test_cli_rejects_misspelled_method_fast_without_loading_weights(tmp_path):
    path = write(tmp_path, {"variants": [{"name": "a", "stages": [{"prune": {"method": "wandaa", "ratio": 0.5}}]}]})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "prunekit.cli", "run", str(path)], capture_output=True, text=True,
                          timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2
    assert "Unknown method 'wandaa'" in proc.stderr
    assert "variants[0].stages[0].prune.method" in proc.stderr
    assert "magnitude" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    assert not (tmp_path / "runs").exists()


def test_the_old_name_of_an_option_still_works_with_a_warning_and_both_names_are_refused():
    import warnings

    from prunekit.core.typed import RenamedOptionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage = {"prune": {"method": "wanda", "sparsity": 0.4}}
        recipe = parse_recipe({"variants": [{"name": "a", "stages": [stage]}]})
    assert recipe.variants[0].stages[0].options.config.ratio == 0.4
    assert any(issubclass(w.category, RenamedOptionWarning) and "renamed 'ratio'" in str(w.message) for w in caught)
    assert recipe.to_dict()["variants"][0]["stages"][0]["prune"]["ratio"] == 0.4
    with pytest.raises(ConfigError, match="both 'sparsity' and 'ratio'"):
        parse_recipe({"variants": [{"name": "a", "stages": [{"prune": {"method": "wanda", "sparsity": 0.4,
                                                                       "ratio": 0.4}}]}]})
