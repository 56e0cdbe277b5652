"""Test helpers shipped with the package (as xbatcher.testing): tiny data, stand-ins, gateways.

``config`` (tiny configs shrunk from the real params.yaml), ``synthetic`` (a learnable tensor
store), ``rawdata`` (raw files with known values), ``standin`` (a contract-conforming
SavedModel), ``serving`` (gateways, clients and scrapes over loopback). Production code never
imports this package.
"""
