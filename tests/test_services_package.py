"""`imagen_tui.services` is a package of one module per concern whose names load
on first use: importing it costs nothing, and every name of the old module
still resolves to what its home module defines."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

from imagen_tui import services


def test_importing_the_package_imports_none_of_its_modules():
    code = (
        "import sys, imagen_tui.services\n"
        "print(sorted(m for m in sys.modules if m.startswith(('imagen_tui.', 'psycopg'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['imagen_tui.services']"


def test_every_name_resolves_to_its_home_even_after_its_module_was_imported():
    # Import every module first: a module named like a name it defines would
    # then shadow that name on the package (services.session, the function).
    for module in pkgutil.iter_modules(services.__path__):
        importlib.import_module(f"imagen_tui.services.{module.name}")
    for name in services.__all__:
        value = getattr(services, name)
        assert not isinstance(value, types.ModuleType), name
        assert value is getattr(importlib.import_module(services._HOMES[name]), name)
    assert callable(services.session)


def test_an_unknown_name_is_an_attribute_error():
    try:
        services.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("no AttributeError")
