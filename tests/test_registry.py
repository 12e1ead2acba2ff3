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


def test_replace_iteration_and_lookup_by_key():
    registry = Registry("widget")
    registry.register("beta", "math:sqrt")
    registry.register("alpha", len)
    assert list(registry) == ["alpha", "beta"] and len(registry) == 2
    assert registry["beta"](16.0) == 4.0 and registry["alpha"] is len
    registry.register("alpha", abs, summary="absolute value", replace=True)
    assert registry["alpha"] is abs and registry.get("alpha").summary == "absolute value" and len(registry) == 2
    with pytest.raises(ConfigError, match="Unknown widget 'gamma'. Valid choices: alpha, beta"):
        registry["gamma"]


def _registries() -> dict[str, Registry]:
    from prunekit.context import PRUNERS
    from prunekit.data import CORPORA
    from prunekit.evaluate.tasks import TASKS
    from prunekit.graph.handlers import handler_registry
    from prunekit.importance.unit_criteria import UNIT_CRITERIA
    from prunekit.methods import METHODS
    from prunekit.models import ADAPTERS, MODELS
    from prunekit.recipe.stages import STAGES
    from prunekit.runtime.registry import PRESSES

    return {"models": MODELS, "corpora": CORPORA, "methods": METHODS, "tasks": TASKS, "stages": STAGES,
            "presses": PRESSES, "context-pruners": PRUNERS, "adapters": ADAPTERS, "handlers": handler_registry(),
            "unit-criteria": UNIT_CRITERIA}


def _sections(output: str) -> dict[str, list[str]]:
    """`prunekit list` output -> {heading: [entry names in order]}."""
    sections: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("  "):
            sections[list(sections)[-1]].append(line.split()[0])
        elif line.endswith(":"):
            sections[line[:-1]] = []
    return sections


def test_prunekit_list_shows_every_registry_and_every_entry():
    from typer.testing import CliRunner

    from prunekit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    expected = {kind: registry.names() for kind, registry in _registries().items()}
    assert all(expected.values())  # no registry is empty
    assert _sections(result.output) == expected
    assert "torch.nn.modules.linear.linear" in expected["handlers"] and "llama" in expected["adapters"]
    only = runner.invoke(app, ["list", "context-pruners"])
    assert only.exit_code == 0 and _sections(only.output) == {"context-pruners": expected["context-pruners"]}


def test_prunekit_list_refuses_an_unknown_kind_naming_the_valid_ones():
    from typer.testing import CliRunner

    from prunekit.cli import app

    result = CliRunner().invoke(app, ["list", "handler"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == (
        "Unknown list kind 'handler'. Valid choices: adapters, context-pruners, corpora, handlers, methods, models, "
        "presses, stages, tasks, unit-criteria. Did you mean 'handlers'?")


def test_adapters_register_by_family_with_their_model_types():
    from prunekit.models import ADAPTERS, ModelAdapter, adapter_for, register_adapter, supported_model_types
    from prunekit.models.adapters import LlamaAdapter
    from prunekit.testing import tiny_model

    assert ADAPTERS.names() == ["bert", "gpt2", "llama"]
    assert ADAPTERS.load("llama") is LlamaAdapter and ADAPTERS.get("llama").kind == "causal-lm"
    assert ADAPTERS.get("bert").kind == "encoder" and "qwen3" in ADAPTERS.get("llama").summary
    assert supported_model_types() == ["bert", "gpt2", "llama", "mistral", "qwen2", "qwen3"]
    assert isinstance(adapter_for(tiny_model("qwen2")), LlamaAdapter)

    class Clash(ModelAdapter):
        model_types = ("phi3", "qwen2")
        family = "clash"

    with pytest.raises(ValueError, match=r"model type 'qwen2' already has an adapter \(LlamaAdapter\)"):
        register_adapter(Clash)
    assert "clash" not in ADAPTERS and "phi3" not in supported_model_types()


def test_handlers_are_keyed_by_lowercased_class_name_and_found_along_the_mro():
    from torch import nn

    from prunekit.graph import LayerHandler, handler_for, register_handler, registered_handlers
    from prunekit.graph.handlers import handler_registry

    handlers = handler_registry()
    linear = handlers.load("torch.nn.modules.linear.linear")  # nn.Linear, lowercased
    assert type(linear).__name__ == "LinearHandler"
    assert handlers.get("torch.nn.modules.linear.linear").kind == "built-in"
    assert registered_handlers() == handlers.names()

    class Wide(nn.Linear):  # no handler of its own: Linear's, found along the MRO
        pass

    class Narrow(nn.Linear):
        pass

    assert handler_for(Wide(2, 3)) is linear
    custom = LayerHandler()
    register_handler(f"{Narrow.__module__}.{Narrow.__qualname__}", custom)  # by name, matched case-insensitively
    key = f"{Narrow.__module__}.{Narrow.__qualname__}".lower()
    assert handler_for(Narrow(2, 3)) is custom and handlers.get(key).kind == "custom"
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        register_handler(Narrow, LayerHandler())
    again = LayerHandler()
    register_handler(Narrow, again, replace=True)
    assert handler_for(Narrow(2, 3)) is again
