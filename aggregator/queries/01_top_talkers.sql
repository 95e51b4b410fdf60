-- Top talkers: the source workloads that opened the most connections in the
-- last hour, with how many distinct destinations they reached.
SELECT src_namespace, if(src_workload != '', src_workload, src_pod) AS source,
       sum(connections) AS connections,
       uniqExact(dst_ip, dst_port) AS destinations
FROM tapwire.connection_counts
WHERE minute >= now() - 3600
GROUP BY src_namespace, source
ORDER BY connections DESC, source
LIMIT 10
