-- External destinations first contacted in the last 24 hours that were not
-- contacted in the 7 days before.
SELECT dst_domain, dst_ip, dst_port, min(first_seen) AS first_contact,
       sum(connections) AS connections
FROM tapwire.connection_counts
WHERE dst_kind = 'external' AND minute >= now() - 8 * 86400
GROUP BY dst_domain, dst_ip, dst_port
HAVING first_contact >= now() - 86400
ORDER BY first_contact, dst_ip, dst_port
