-- Pod-to-pod connections that cross namespaces in the last day, per mode.
SELECT src_namespace, dst_namespace,
       sumIf(connections, mode = 'audit') AS audit,
       sumIf(connections, mode = 'enforce') AS enforce,
       sumIf(connections, mode = 'other') AS other
FROM tapwire.connection_counts
WHERE src_kind = 'pod' AND dst_kind = 'pod' AND src_namespace != dst_namespace
  AND minute >= now() - 86400
GROUP BY src_namespace, dst_namespace
ORDER BY src_namespace, dst_namespace
