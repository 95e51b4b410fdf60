-- The flows that moved the most bytes in the last day (exfiltration hunting).
SELECT sensor_id, binary, src_pod, dst_ip, dst_port, dst_domain,
       bytes_sent, bytes_received, duration_ns
FROM tapwire.flows
WHERE time >= now() - 86400
ORDER BY bytes_sent DESC, event_id
LIMIT 10
