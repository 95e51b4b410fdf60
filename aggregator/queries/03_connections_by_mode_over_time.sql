-- Connections per policy mode in 5-minute buckets over the last 6 hours.
SELECT toStartOfFiveMinute(minute) AS bucket, mode, sum(connections) AS connections
FROM tapwire.connection_counts
WHERE minute >= now() - 6 * 3600
GROUP BY bucket, mode
ORDER BY bucket, mode
