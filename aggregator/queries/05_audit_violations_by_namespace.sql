-- Audit-mode violations per namespace and event kind in the last day: what
-- switching those policies to enforce would block.
SELECT src_namespace, kind, count() AS violations
FROM tapwire.verdicts
WHERE mode = 'audit' AND outcome = 'audited' AND time >= now() - 86400
GROUP BY src_namespace, kind
ORDER BY violations DESC, src_namespace, kind
