"""The agent's controllers (see tulle.agent.controller for the contract):

  network       the backend: routes / neighbours / FDB / BGP for every remote lease
  masquerade    inet tulle-agent: what leaves the cluster network is masqueraded
  endpoints     leader only: EndpointSlices from Services and Pods
  allocations   leader only: ClusterIP / NodePort claims whose Service is gone are released
"""
