-- TCP and UDP listeners in each sensor's latest heartbeat, by binary.
SELECT socket_kind, ifNull(binary, '?') AS binary, local_port, count() AS sensors
FROM tapwire.inventory_sockets
WHERE socket_kind IN ('tcp_listener', 'udp_listener')
  AND (sensor_id, snapshot_ns) IN
      (SELECT sensor_id, max(snapshot_ns) FROM tapwire.inventory_sockets GROUP BY sensor_id)
GROUP BY socket_kind, binary, local_port
ORDER BY socket_kind, local_port, binary
