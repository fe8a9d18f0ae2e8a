"""The Alertmanager intake: a webhook receiver (payload version 4) that turns alerts into Incidents.

``config`` (what may be accepted), ``payload`` (the webhook's shape and raw-body checks),
``mapping`` (alerts → incident plans; pure), ``incidents`` (plans → the cluster),
``server`` (HTTP: auth, limits, refusals), ``metrics``; and ``forge_hooks``, the forges' pull request
webhooks, which wake PatchPlans (their own port, the same refusals).
"""
