"""The layout rules of docs/architecture.md: no import cycles inside bpfjit, counting imports deferred into
functions too (only `if TYPE_CHECKING:` blocks are exempt), and every entry through the one pipeline."""
from __future__ import annotations

import ast
from pathlib import Path

import bpfjit

ROOT = Path(bpfjit.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                ast.unparse(node.test) for n in ast.walk(node)}
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split(".")
                    mod = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
                if len(subs) < len(node.names) and mod in mods:
                    deps.add(mod)
                deps.update(subs)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        deps.discard(name)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = _graph()
    assert len(graph) > 50
    assert _cycles(graph) == []


def test_engines_implement_the_one_interface():
    from bpfjit.engine import Engine
    from bpfjit.interp import Interpreter
    from bpfjit.jit.engine import JITEngine
    assert issubclass(Interpreter, Engine) and issubclass(JITEngine, Engine)
    assert not Interpreter.__abstractmethods__ and not JITEngine.__abstractmethods__


def test_vm_prepares_through_the_pipeline(engine, monkeypatch):
    """VM, tail-call targets and prog_array slots all call pipeline.prepare."""
    from bpfjit import VM, Program, pipeline
    calls = []
    real = pipeline.prepare

    def spy(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)
    monkeypatch.setattr(pipeline, "prepare", spy)
    import bpfjit.vm as vm_module
    monkeypatch.setattr(vm_module, "prepare", spy)
    prog = Program.from_asm("mov %r0, 3\nexit")
    assert VM(prog, engine).run() == 3 and calls == [prog]
