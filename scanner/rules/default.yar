// tapwire's built-in rules: compiled into the binary so that `tapwire scan`
// finds something useful with no configuration. Add your own with
// `--rules FILE|DIR` (or `scan.rules` in the config).

rule eicar_test_file : test {
  meta:
    description = "The EICAR anti-virus test string (harmless, used to check that scanning works)"
    severity = "high"
  strings:
    $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
  condition:
    $eicar
}

rule reverse_shell_one_liner : shell {
  meta:
    description = "A shell one-liner that connects a shell to a remote host"
    severity = "critical"
  strings:
    $bash_tcp = /(bash|sh) +-i +>& *\/dev\/tcp\/[0-9a-zA-Z.\-]+\/[0-9]+/
    $nc_exec = /\bnc(at)? +(-[a-z]+ +)*-e +\/bin\/(ba)?sh\b/
    $mkfifo = /mkfifo +\/tmp\/[a-z0-9]+ *; *(cat|tail) /
  condition:
    any of them
}

rule xmrig_miner : miner {
  meta:
    description = "XMRig cryptocurrency miner (binary strings or its pool login)"
    severity = "high"
  strings:
    $a = "xmrig" nocase
    $b = "stratum+tcp://" ascii
    $c = "\"algo\": \"rx/0\"" ascii
    $d = "donate-level" ascii
  condition:
    2 of them
}

rule webshell_php_eval : webshell {
  meta:
    description = "A PHP web shell evaluating request input"
    severity = "critical"
  strings:
    $a = /<\?php[^>]{0,200}(eval|assert|system|passthru|shell_exec)\s*\(\s*(base64_decode\s*\()?\s*\$_(GET|POST|REQUEST|COOKIE)/
  condition:
    $a
}
