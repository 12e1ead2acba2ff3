import pytest

from prunekit.errors import ConfigError
from prunekit.registry import Registry


def test_register_get_and_lazy_load():
    registry = Registry("widget")
    registry.register("alpha", "math:sqrt", summary="square root")
    registry.register("beta", len)
    assert registry.names() == ["alpha", "beta"]
    assert registry.load("alpha")(9.0) == 3.0
    assert registry.load("beta")([1, 2]) == 2


def test_unknown_name_lists_choices_and_suggests():
    registry = Registry("widget")
    registry.register("wanda", 1)
    registry.register("magnitude", 2)
    with pytest.raises(ConfigError) as err:
        registry.get("wandaa", "variants[0].stages[0].prune.method")
    message = str(err.value)
    assert "Unknown widget 'wandaa'" in message
    assert "variants[0].stages[0].prune.method" in message
    assert "magnitude, wanda" in message
    assert "Did you mean 'wanda'" in message


def test_names_must_be_unique_and_lowercase():
    registry = Registry("widget")
    registry.register("one", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("one", 2)
    with pytest.raises(ValueError, match="lowercase"):
        registry.register("Two", 2)
