#!/usr/bin/env python3
"""The layer rule of docs/architecture.md, checked on the sources (run by `make lint`).

Reads every `crate::` and `super::` path in src/ (code only: comments and `#[cfg(test)]` test
modules are left out), resolves each to the file (module) it names, and fails when
- a module imports from a higher layer (vocabulary < capabilities < policy < pipeline < host), or
- files import each other in a cycle, within a layer too.
Prints each offending import with the file and line. No third-party packages.
"""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")

# Top-level modules by layer, lowest first. A new module must be placed here.
LAYERS = [
    ("vocabulary", ["reason", "mode", "config_error", "problem", "json", "tape", "swar",
                    "header_map", "request", "media_type", "spellings"]),
    ("capabilities", ["authn", "authz", "validation", "ratelimit", "redaction", "incident",
                      "audit", "ambiguity"]),
    ("policy", ["routes", "config"]),
    ("pipeline", ["pipeline", "decision", "response"]),
    ("host", ["host"]),
]
LAYER_OF = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].replace(os.sep, "::")
    if rel == "lib":
        return ""
    return rel[:-len("::mod")] if rel.endswith("::mod") else rel


def code_only(text):
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\b", text)
    if cut:
        text = text[:cut.start()]
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.split("\n"))


def expand(text, start):
    """Paths of the use-tree at text[start:] (after `crate::`), and where it ends."""
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", text[start:])
    prefix = m.group(0) if m else ""
    i = start + len(prefix)
    if text.startswith("::{", i) or (not prefix and text.startswith("{", i)):
        i = text.index("{", i) + 1
        paths, depth, item = [], 1, ""
        while depth and i < len(text):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and c == ",":
                paths.append(item)
                item = ""
            elif depth >= 1 and not (depth == 1 and c == "}"):
                item += c
            i += 1
        paths.append(item)
        out = []
        for p in paths:
            p = re.sub(r"\s+", "", p)
            if not p or p == "self":
                out.append(prefix)
                continue
            sub = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", p)
            if sub:
                out.append(f"{prefix}::{sub.group(0)}" if prefix else sub.group(0))
        return out
    return [prefix]


def main():
    files = {}
    for d, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(d, name)
                text = code_only(open(path, encoding="utf-8").read())
                files[module_of(path)] = (os.path.relpath(path, REPO), text)
    modules = set(files)

    def resolve(path):
        parts = path.split("::")
        for k in range(len(parts), 0, -1):
            if "::".join(parts[:k]) in modules:
                return "::".join(parts[:k])
        return None

    edges, problems = {}, []
    for mod, (path, text) in files.items():
        is_dir_module = path.endswith("mod.rs") or mod == ""
        parent = mod if is_dir_module else mod.rpartition("::")[0]
        for m in re.finditer(r"\b(crate|super)::", text):
            base = "" if m.group(1) == "crate" else parent.rpartition("::")[0] if is_dir_module else parent
            if m.group(1) == "super" and not is_dir_module:
                base = parent
            for p in expand(text, m.end()):
                full = f"{base}::{p}" if base and p else (base or p)
                target = resolve(full)
                if target is None or target == mod or mod.startswith(target + "::") or target == "":
                    continue
                line = text.count("\n", 0, m.start()) + 1
                edges.setdefault(mod, {}).setdefault(target, line)

    def layer(mod):
        return LAYER_OF.get(mod.split("::")[0])

    for mod in sorted(modules):
        if mod and layer(mod) is None:
            problems.append(f"src/{mod.replace('::', '/')}: module in no layer (add it to tools/check_layers.py and docs/architecture.md)")
    for mod, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            lm, lt = layer(mod), layer(target)
            if lm is not None and lt is not None and lt > lm:
                problems.append(f"{files[mod][0]}:{line}: {mod} ({LAYERS[lm][0]}) imports {target} ({LAYERS[lt][0]}): upward")

    # Cycles: strongly connected components of the file graph (Tarjan, iterative).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp))
    for comp in sccs:
        inner = [f"{a} -> {b} ({files[a][0]}:{l})" for a in comp for b, l in edges.get(a, {}).items() if b in comp]
        problems.append("import cycle: " + "; ".join(inner))

    if problems:
        print("layer rule broken (docs/architecture.md):")
        for p in problems:
            print("  " + p)
        return 1
    n = sum(len(t) for t in edges.values())
    print(f"layers: {len(modules)} files, {n} imports, no upward import, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
