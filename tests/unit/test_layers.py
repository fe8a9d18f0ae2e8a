"""Safety invariant 1, statically: only the gateway writes to the cluster. No exemptions.

Three checks, on every module of the package outside ``gateway/``: it imports no
``kubernetes`` module, it calls none of the writing methods of ``Kube`` on
anything, and it sends no raw request (the client's ``rest_client``, ``call_api``,
its auth headers, or ``Kube``'s private ``_request``/``_send``, whatever the verb: a
raw ``PATCH`` is a write the method names do not show, and a raw read skips the
impersonation the client adds). The gateway's ``writes`` (the protected app) and
``records`` (the operator's own objects and people's relctl changes) are the only doors.
"""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "src" / "reliability_center"
#: The writing methods of gateway.kube.Kube.
WRITES = {"apply", "create", "replace", "delete", "json_patch", "merge_patch"}
#: What may be called with those names outside the gateway, and on what (receiver's last name).
ALLOWED = {
    ("records", "create"), ("records", "replace"), ("records", "delete"),  # the gateway's own doors
    ("ctx", "apply"), ("ctx", "create"),  # actions write through their ActionContext, which calls the gateway
    ("gateway", "apply"), ("gateway", "create"),  # actions/base.py: ActionContext → WriteGateway
    ("lc", "apply"),  # gitops.lifecycle.apply: a pure status transition
}
#: Raw requests: the kubernetes client's own transport, and Kube's private doors under its methods.
RAW = {"rest_client", "call_api", "update_params_for_auth", "pool_manager", "_request", "_send"}
#: ``replace`` is also every string's and datetime's: it counts only on a client-like receiver.
CLIENTS = {"kube", "Kube", "client", "api", "self"}


def modules_outside_gateway():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if not rel.startswith("gateway/"):
            yield rel, ast.parse(path.read_text())


def receiver(func: ast.Attribute) -> str:
    value = func.value
    while isinstance(value, ast.Call):
        value = value.func
    if isinstance(value, ast.Attribute):
        return value.attr
    if isinstance(value, ast.Name):
        return value.id
    return type(value).__name__


def test_no_module_outside_the_gateway_imports_the_kubernetes_client():
    offenders = []
    for rel, tree in modules_outside_gateway():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], f"kubernetes imported outside the gateway: {offenders}"


def test_no_module_outside_the_gateway_calls_a_writing_method_of_the_client():
    offenders = []
    for rel, tree in modules_outside_gateway():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
                who, what = receiver(node.func), node.func.attr
                if (who, what) in ALLOWED or (what == "replace" and who not in CLIENTS):
                    continue
                offenders.append(f"{rel}:{node.lineno} {who}.{what}(...)")
    assert offenders == [], f"cluster writes outside the gateway: {offenders}"


def raw_requests(tree: ast.AST) -> list[tuple[int, str]]:
    return [(node.lineno, node.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in RAW]


def test_no_module_outside_the_gateway_sends_a_raw_request():
    offenders = [f"{rel}:{line} .{attr}" for rel, tree in modules_outside_gateway() for line, attr in raw_requests(tree)]
    assert offenders == [], f"raw requests outside the gateway: {offenders}"


def test_the_check_sees_a_raw_request_whatever_its_verb():
    """The detector itself: raw PATCHes and GETs, through the client's transport or Kube's private door."""
    tree = ast.parse("def f(kube, api):\n"
                     "    api.rest_client.request('PATCH', url, headers=h, body=b)\n"
                     "    kube._request('PATCH', path, body={})\n"
                     "    kube.api.call_api(path, 'GET')\n"
                     "    context.kube()._send('DELETE', path, None, None, {}, 30)\n")
    assert sorted(raw_requests(tree)) == [(2, "rest_client"), (3, "_request"), (4, "call_api"), (5, "_send")]


def test_the_check_sees_a_write_outside_the_gateway():
    """The detector itself: a direct write in a module outside the gateway is caught."""
    tree = ast.parse("def f(kube):\n    kube.merge_patch(ref, {})\n    context.kube().delete(ref)\n")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in WRITES]
    assert [(receiver(c.func), c.func.attr) for c in calls] == [("kube", "merge_patch"), ("kube", "delete")]


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
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in WRITES | {"propose"} and receiver(node.func) == "read":
                offenders.append(f"{path.name}:{node.lineno} writes through the reader")
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
