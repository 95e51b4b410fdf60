-- The most queried DNS names in the last hour, and by how many pods.
SELECT dns_name, count() AS queries, uniqExact(src_namespace, src_pod) AS pods
FROM tapwire.network_events
WHERE kind IN ('dns_query', 'dns_lookup', 'dns_resolution') AND time >= now() - 3600
GROUP BY dns_name
ORDER BY queries DESC, dns_name
LIMIT 20
