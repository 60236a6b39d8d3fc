"""No import cycles between our modules: each one can be read, and imported, after what it uses.

The graph is grimp's (the library behind lint-imports, .importlinter), built from the source
without importing it. Imports under ``if TYPE_CHECKING:`` count: a type-only cycle still means
two modules that cannot be understood apart.
"""

from __future__ import annotations

import itertools

import grimp

PACKAGES = ("agent", "actions", "detectors", "demo", "drift_logger")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of modules that import each other in a circle."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One cycle through the component, each import with its file line."""
    first = component[0]
    chain: list[str] = []
    for start in sorted(graph.find_modules_directly_imported_by(first) & set(component)):
        back = graph.find_shortest_chain(importer=start, imported=first)
        if back is not None:
            chain = [first, *back]
            break
    lines = []
    for importer, imported in itertools.pairwise(chain):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = f" (line {details[0]['line_number']}: {details[0]['line_contents']})" if details else ""
        lines.append(f"  {importer} -> {imported}{where}")
    return f"{' <-> '.join(component)}:\n" + "\n".join(lines)


def test_there_is_no_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)
