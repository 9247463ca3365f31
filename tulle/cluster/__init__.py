"""The cluster's data, kept in the store: the network config, subnet leases, IPAM
blocks and Kubernetes-shaped API objects (Namespace, Pod, Service, EndpointSlice,
NetworkPolicy, ...). Below agent/, cni/ and lab/; above store/."""
