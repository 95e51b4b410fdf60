-- Enforce-mode violations that went through in the last day (the node did not
-- or could not stop them), by policy and rule: what "enforce" did not prevent.
SELECT policy, rule, signature_id, count() AS not_prevented,
       uniqExact(src_namespace, src_pod) AS pods
FROM tapwire.verdicts
WHERE outcome = 'not_prevented' AND time >= now() - 86400
GROUP BY policy, rule, signature_id
ORDER BY not_prevented DESC, policy, rule
