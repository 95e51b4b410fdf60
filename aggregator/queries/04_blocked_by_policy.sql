-- What enforce-mode policies blocked in the last day, by policy and rule.
SELECT policy, rule, signature_id, count() AS blocked,
       uniqExact(src_namespace, src_pod) AS pods
FROM tapwire.verdicts
WHERE outcome = 'blocked' AND time >= now() - 86400
GROUP BY policy, rule, signature_id
ORDER BY blocked DESC, policy, rule
