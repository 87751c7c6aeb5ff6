"""The delivery core is plain Python: no module under app/delivery/ imports a Socket.IO library,
eventlet, Flask, or the parts of the app that hold the Socket.IO server."""

import ast
from pathlib import Path

import app.delivery

CORE = Path(app.delivery.__file__).parent
FORBIDDEN = {"socketio", "engineio", "flask_socketio", "eventlet", "flask", "app.extensions", "app.realtime"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    return any(name == banned or name.startswith(f"{banned}.") for banned in FORBIDDEN)


def test_the_delivery_core_imports_no_socket_library_and_no_flask():
    found = {
        f"{path.name}: {name}"
        for path in sorted(CORE.glob("**/*.py"))
        for name in imported_modules(path)
        if forbidden(name)
    }
    assert not found
    assert len(list(CORE.glob("**/*.py"))) >= 4  # the walk did see the package
