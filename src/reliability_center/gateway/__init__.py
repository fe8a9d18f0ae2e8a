"""The Write Gateway: the only code that changes the cluster.

Every change to the protected application passes ``WriteGateway.apply``,
``create`` or ``restore``: policy check, durable snapshot, server-side apply
under one field manager (or a dry-run in shadow mode), audit record, and the
recorded inverse. ``records`` writes the operator's own objects (status,
events, snapshots, guard state).
"""

from reliability_center.gateway.kube import FIELD_MANAGER, Kube, Ref
from reliability_center.gateway.writes import Audited, PolicyDenied, WriteContext, WriteGateway, WriteResult

__all__ = ["FIELD_MANAGER", "Audited", "Kube", "PolicyDenied", "Ref", "WriteContext", "WriteGateway", "WriteResult"]
