"""Which apiserver errors the runner retries, and which it stops on."""

import urllib3
from kubernetes.client.exceptions import ApiException

from reliability_center.gateway.kube import namespace_terminating, transient


def api_error(status: int, body: str = "") -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = body
    return exc


def test_overload_and_server_errors_are_transient():
    assert all(transient(api_error(s)) for s in (429, 500, 502, 503, 504))


def test_client_errors_are_not_transient():
    assert not any(transient(api_error(s)) for s in (400, 401, 403, 404, 409, 422))


def test_connection_failures_are_transient():
    assert transient(urllib3.exceptions.ProtocolError("reset"))
    assert transient(ConnectionResetError())
    assert not transient(ValueError("bug"))


def test_a_terminating_namespace_is_recognised():
    body = '{"message":"configmaps \\"x\\" is forbidden: unable to create new content in namespace t because it is being terminated"}'
    assert namespace_terminating(api_error(403, body))
    assert not namespace_terminating(api_error(403, '{"message":"forbidden: RBAC"}'))


def test_an_apiserver_error_is_described_by_its_own_message_not_its_headers():
    from reliability_center.gateway.kube import describe

    exc = api_error(403, '{"message":"configmaps \\"x\\" is forbidden: exceeded quota: q"}')
    assert describe(exc) == 'ApiError 403: configmaps "x" is forbidden: exceeded quota: q'
    assert describe(ValueError("bug")) == "ValueError: bug"


def test_the_in_cluster_client_pools_as_many_connections_as_the_kubeconfig_one(tmp_path, monkeypatch):
    from kubernetes.config import incluster_config

    from reliability_center.gateway.kube import POOL_SIZE, load_api_client

    # A Pod's service account, as the kubelet mounts it (paths moved to a scratch directory).
    (tmp_path / "token").write_text("a-token")
    (tmp_path / "ca.crt").write_text("not read until a connection is made")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = load_api_client()
    assert api.configuration.host == "https://10.96.0.1:443"
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == POOL_SIZE == 32
