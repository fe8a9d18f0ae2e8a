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
