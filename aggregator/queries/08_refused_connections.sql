-- Destinations that refused connections in the last hour (scans, broken
-- services), by source.
SELECT dst_ip, dst_port, src_namespace, src_pod, count() AS refused
FROM tapwire.flows
WHERE final_state = 'refused' AND time >= now() - 3600
GROUP BY dst_ip, dst_port, src_namespace, src_pod
ORDER BY refused DESC, dst_ip, dst_port
