"""The package holds no unsafe loader or code runner (issue 8): a static check of every module."""
from __future__ import annotations

import ast
from pathlib import Path

import explorer

PACKAGE = Path(explorer.__file__).resolve().parent


def _calls(tree, name):
    """Calls of ``name`` (``torch.load``, ``np.load``, ...) in an AST."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            dotted = (f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute)
                      else getattr(func, "id", ""))
            if dotted == name:
                yield node


def test_the_package_has_no_unsafe_loader_or_code_runner():
    """Static proof for every module: torch.load only with weights_only=True, np.load only
    with allow_pickle=False, no pickle/marshal/shelve loads, no eval/exec, no shell."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "torch.load"):
            if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} torch.load without weights_only=True")
        for call in _calls(tree, "np.load"):
            if not any(k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} np.load without allow_pickle=False")
        for name in ("pickle.load", "pickle.loads", "marshal.loads", "shelve.open", "eval", "exec",
                     "os.system", "os.popen"):
            found += [f"{path.name}:{c.lineno} {name}" for c in _calls(tree, name)]
        for call in _calls(tree, "subprocess.run"):
            if any(k.arg == "shell" and getattr(k.value, "value", None) is True for k in call.keywords):
                found.append(f"{path.name}:{call.lineno} subprocess with shell=True")
    assert not found, found
