{{/* Names, labels and the pieces every tapwire workload shares. */}}

{{- define "tapwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RELEASE-tapwire, or RELEASE when it already says tapwire. */}}
{{- define "tapwire.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tapwire.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one stage's resources: (dict "root" $ "stage" "enrich"). */}}
{{- define "tapwire.stageName" -}}
{{- printf "%s-%s" (include "tapwire.fullname" .root) .stage | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tapwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tapwire.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "tapwire.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "tapwire.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tapwire
{{- end -}}

{{/* Labels of resources that belong to no one stage. */}}
{{- define "tapwire.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tapwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tapwire
{{- end -}}

{{- define "tapwire.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tapwire.configMapName" -}}
{{- printf "%s-config" (include "tapwire.fullname" .) -}}
{{- end -}}

{{/* ------------------------------------------------------------ Secrets */}}

{{- define "tapwire.s3SecretName" -}}
{{- $c := .Values.record.s3.credentials -}}
{{- if $c.existingSecret -}}{{ $c.existingSecret }}
{{- else if $c.createSecret -}}{{ printf "%s-s3" (include "tapwire.fullname" .) }}
{{- end -}}
{{- end -}}

{{- define "tapwire.syslogTlsSecretName" -}}
{{- $t := .Values.cef.tls -}}
{{- if $t.existingSecret -}}{{ $t.existingSecret }}
{{- else if $t.createSecret -}}{{ printf "%s-syslog-tls" (include "tapwire.fullname" .) }}
{{- end -}}
{{- end -}}

{{- define "tapwire.clickhouseSecretName" -}}
{{- $c := .Values.clickhouse -}}
{{- if $c.existingSecret -}}{{ $c.existingSecret }}
{{- else if $c.createSecret -}}{{ printf "%s-clickhouse" (include "tapwire.fullname" .) }}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------ tapwire.toml */}}

{{/* A TOML key: bare when it can be, else a quoted string. */}}
{{- define "tapwire.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* A TOML value. Helm reads numbers in values as floats: whole ones are
     written as integers, which is what tapwire's config expects. */}}
{{- define "tapwire.toml.value" -}}
{{- $k := kindOf . -}}
{{- if eq $k "string" -}}{{ toJson . }}
{{- else if eq $k "bool" -}}{{ . }}
{{- else if or (eq $k "float64") (eq $k "float32") -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (eq $k "int") (eq $k "int64") (eq $k "int32") (eq $k "uint64") -}}{{ . }}
{{- else if eq $k "slice" -}}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "tapwire.toml.value" $e }}{{ end }}]
{{- else -}}{{ fail (printf "config: a %s cannot be written as a TOML value" $k) }}
{{- end -}}
{{- end -}}

{{/* A table: its scalar keys, then its sub-tables. (dict "path" "a.b" "table" map) */}}
{{- define "tapwire.toml.table" -}}
{{- $path := .path -}}
{{- if $path }}
[{{ $path }}]
{{- end }}
{{- range $k, $v := .table }}
{{- if and (ne (kindOf $v) "map") (ne (kindOf $v) "invalid") }}
{{ include "tapwire.toml.key" $k }} = {{ include "tapwire.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if eq (kindOf $v) "map" }}
{{ include "tapwire.toml.table" (dict "path" (ternary (include "tapwire.toml.key" $k) (printf "%s.%s" $path (include "tapwire.toml.key" $k)) (eq $path "")) "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* config merged with what the chart decides (ports, TLS file paths). */}}
{{- define "tapwire.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $telemetry := dict "admin_listen" (printf "0.0.0.0:%d" (int .Values.admin.port)) -}}
{{- $_ := set $config "telemetry" (merge $telemetry (default (dict) $config.telemetry)) -}}
{{- $aggregate := dict "listen" (printf "0.0.0.0:%d" (int .Values.serve.port)) -}}
{{- $_ := set $config "aggregate" (merge $aggregate (default (dict) $config.aggregate)) -}}
{{- if and .Values.cef.enabled .Values.cef.tls.enabled -}}
{{- $cef := dict "ca_file" "/etc/tapwire/tls/ca.pem" -}}
{{- if .Values.cef.tls.clientAuth -}}
{{- $_ := set $cef "client_cert_file" "/etc/tapwire/tls/client.pem" -}}
{{- $_ := set $cef "client_key_file" "/etc/tapwire/tls/client.key" -}}
{{- end -}}
{{- if .Values.cef.tls.serverName -}}
{{- $_ := set $cef "tls_server_name" .Values.cef.tls.serverName -}}
{{- end -}}
{{- $_ := set $config "cef" (merge $cef (default (dict) $config.cef)) -}}
{{- end -}}
{{- if hasKey $config "capture" -}}
{{- fail "config.capture: set the capture agent through capture.* values (passed as TAPWIRE_CAPTURE__* variables)" -}}
{{- end -}}
{{- if hasKey $config "record" -}}
{{- fail "config.record: set the recorder through record.* values (passed as S3_BUCKET, RECORDING_KFL and TAPWIRE_RECORD__* variables)" -}}
{{- end -}}
# tapwire.toml, rendered by the tapwire Helm chart from `config` in values.yaml.
# Every key: deploy/tapwire.example.toml. Environment variables
# TAPWIRE_<SECTION>__<KEY> set in the pods override single keys.
{{ include "tapwire.toml.table" (dict "path" "" "table" $config) }}
{{- end -}}

{{/* ------------------------------------------------------------ pods */}}

{{/* Pod annotations: Prometheus discovery and a checksum of tapwire.toml
     (a changed config rolls the pods; policy files reload in place and are
     left out of it). (dict "root" $ "values" stageValues "port" adminPort) */}}
{{- define "tapwire.podAnnotations" -}}
prometheus.io/scrape: {{ .root.Values.metrics.scrape | toString | quote }}
prometheus.io/port: {{ .port | int | toString | quote }}
prometheus.io/path: {{ .root.Values.metrics.path | quote }}
checksum/config: {{ include "tapwire.config" .root | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tapwire.probes" -}}
readinessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .Values.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .Values.probes.liveness | nindent 2 }}
{{- end -}}

{{/* A consumer stage's Deployment.
     (dict "root" $ "stage" "enrich" "values" .Values.enrich "args" (list ...)
           "env" yamlString "volumeMounts" yamlString "volumes" yamlString
           "ports" yamlString "configItems" yamlString "serviceAccount" name) */}}
{{- define "tapwire.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "tapwire.stageName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tapwire.labels" . | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      {{- include "tapwire.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tapwire.selectorLabels" . | nindent 8 }}
      annotations:
        {{- include "tapwire.podAnnotations" (dict "root" $root "values" $v "port" $root.Values.admin.port) | nindent 8 }}
    spec:
      {{- if .serviceAccount }}
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 60
      containers:
        - name: {{ .stage }}
          image: {{ include "tapwire.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- range (concat .args $v.extraArgs) }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: TAPWIRE_CONFIG
              value: /etc/tapwire/tapwire.toml
            {{- with .env }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: admin
              containerPort: {{ $root.Values.admin.port }}
              protocol: TCP
            {{- with .ports }}
            {{- . | trim | nindent 12 }}
            {{- end }}
          {{- include "tapwire.probes" $root | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/tapwire
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- . | trim | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "tapwire.configMapName" $root }}
            items:
              - key: tapwire.toml
                path: tapwire.toml
              {{- with .configItems }}
              {{- . | trim | nindent 14 }}
              {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with .volumes }}
        {{- . | trim | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* TAPWIRE_AGGREGATE__PASSWORD from the ClickHouse Secret, when there is one. */}}
{{- define "tapwire.clickhouseEnv" -}}
{{- $secret := include "tapwire.clickhouseSecretName" . -}}
{{- if $secret -}}
- name: TAPWIRE_AGGREGATE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.clickhouse.passwordKey }}
{{- end -}}
{{- end -}}
