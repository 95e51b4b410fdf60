-- Shells started inside pods in the last day, with the verdict they got.
SELECT namespace, pod, binary, command_line, mode, outcome, count() AS runs
FROM tapwire.runtime_events
WHERE kind = 'process_exec' AND match(binary, '/(ba|da|z)?sh$') AND namespace != ''
  AND time >= now() - 86400
GROUP BY namespace, pod, binary, command_line, mode, outcome
ORDER BY runs DESC, namespace, pod
