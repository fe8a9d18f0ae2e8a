"""Safety invariant 1, statically: only the gateway writes to the cluster."""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "src" / "reliability_center"


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node.func


def test_only_the_gateway_imports_the_kubernetes_client_for_writes():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(("gateway/", "gitops/")) or rel.startswith("operator/patchplan"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                    offenders.append(rel)
    assert offenders == [], f"kubernetes imported outside the gateway: {offenders}"


def test_actions_hold_no_client_and_write_only_through_their_context():
    """Actions get a reader and ``ctx.apply/create/propose``; only base.py touches the gateway."""
    offenders = []
    for path in (PKG / "actions").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in {"Kube", "WriteGateway"} and path.name != "base.py":
                offenders.append(f"{path.name}:{node.lineno} uses {node.id}")
            if isinstance(node, ast.Attribute) and node.attr in {"gateway", "kube"} and path.name != "base.py":
                offenders.append(f"{path.name}:{node.lineno} reaches .{node.attr}")
        for func in calls(tree):
            if func.attr in {"apply", "create", "propose"} and isinstance(func.value, ast.Attribute) \
                    and func.value.attr == "read":
                offenders.append(f"{path.name}:{func.lineno} writes through the reader")
    assert offenders == [], f"actions writing outside ctx.apply/create/propose: {offenders}"


def test_engine_policy_and_api_are_pure():
    for layer in ("engine", "policy", "api"):
        for path in (PKG / layer).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith(("reliability_center.gateway", "reliability_center.operator",
                                                       "kubernetes", "kopf", "httpx", "git")), (path, node.module)


def test_import_linter_contracts_are_kept():
    """The layer contract in pyproject.toml: cli > operator > actions|gitops > gateway > engine > policy > api."""
    import subprocess
    import sys

    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PKG.parents[1])
    assert result.returncode == 0, result.stdout[-3000:]
