#!/usr/bin/python3
"""Builds the one-replica account, container and object rings of the test
Swift in one process (nine swift-ring-builder calls would take ~8 s).

usage: make_rings.py DIR ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT
"""
import os
import sys

from swift.common.ring import RingBuilder

out = sys.argv[1]
ports = dict(zip(("account", "container", "object"), map(int, sys.argv[2:5])))
for name, port in ports.items():
    builder = RingBuilder(6, 1, 1)  # part power, replicas, min_part_hours
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
                     "device": "d1", "weight": 1.0})
    builder.rebalance()
    builder.save(os.path.join(out, name + ".builder"))
    builder.get_ring().save(os.path.join(out, name + ".ring.gz"))
