"""The public namespace: a guarded export list, final classes, tidy module names."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import native_anyio
import native_anyio.backpack
import native_anyio.backpack.simulator
import native_anyio.testing

NAMESPACES = [native_anyio, native_anyio.testing, native_anyio.backpack, native_anyio.backpack.simulator]


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda m: m.__name__)
def test_all_lists_exactly_the_public_names(namespace):
    public = {name for name in vars(namespace) if not name.startswith("_")}
    submodules = {name for name in public if inspect.ismodule(getattr(namespace, name))}
    assert sorted(namespace.__all__) == namespace.__all__
    assert set(namespace.__all__) == public - submodules - {"annotations"}


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda m: m.__name__)
def test_every_exported_name_resolves(namespace):
    for name in namespace.__all__:
        assert getattr(namespace, name) is not None


def _classes(namespace):
    for name in namespace.__all__:
        obj = getattr(namespace, name)
        if inspect.isclass(obj):
            yield name, obj


# Classes meant to be subclassed or implemented by users.
EXTENSIBLE = {"SymbolService", "SubscriptionProtocol", "WsTransport", "WsConnection", "ConnectionListener",
              "Instrumentation", "Signer"}  # fmt: skip


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda m: m.__name__)
def test_non_exception_public_classes_are_final(namespace):
    not_final = [
        name
        for name, cls in _classes(namespace)
        if not issubclass(cls, BaseException)
        and name not in EXTENSIBLE
        and not getattr(cls, "_is_protocol", False)
        and not _declared_final(cls)
    ]
    assert not_final == []


def _final_classes() -> set[str]:
    """Names of classes decorated with @final anywhere in the package (read with ast)."""
    names: set[str] = set()
    for path in Path(native_anyio.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for deco in node.decorator_list:
                    target = deco.func if isinstance(deco, ast.Call) else deco
                    if (isinstance(target, ast.Name) and target.id == "final") or (
                        isinstance(target, ast.Attribute) and target.attr == "final"
                    ):
                        names.add(node.name)
    return names


FINAL = _final_classes()


def _declared_final(cls: type) -> bool:
    # typing.final only sets __final__ at runtime from Python 3.11: read the source instead.
    return cls.__name__ in FINAL
