"""The node agent: subnet leases in the store, a backend that links this node's
pods to every other node's, masquerade for traffic leaving the cluster, and the
socket that serves CNI requests for this host."""
