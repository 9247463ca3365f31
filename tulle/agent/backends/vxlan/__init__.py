"""The vxlan backend (Flannel's vxlan), split by concern as Flannel splits it:

  plan.py     which neighbours, FDB entries and routes the remote leases need (pure)
  backend.py  the backend: the VTEP's lifecycle, sync (reads the kernel back) and update
              (writes only the difference to the last pass)

The VTEP itself (device, neighbour/FDB/route writes, the entry diff) is ../vtep.py,
shared with bgp's CrossSubnet VXLAN; the route diff is ../routediff.py.
"""
