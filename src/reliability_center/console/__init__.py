"""The Reliability Center console: incidents, approvals and proof in a browser, always as the person looking.

Every read and write goes to the apiserver with the identity of the person using it (their kubeconfig
with ``relctl console``; their bearer token in the in-cluster mode): the console holds no rights of its own.
"""
