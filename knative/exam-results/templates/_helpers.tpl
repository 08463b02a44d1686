{{/*
Shared helpers. Names are fixed by the interface contract: the Knative
Services are named after the functions and PgBouncer's Service is "pgbouncer",
so one release per namespace.
*/}}

{{/*
The functions, from functions.yaml (the one list of them): a YAML document
{functions: [{name, key, access, method, route, port}, ...]}. Use as
  (include "exam-results.functions" . | fromYaml).functions
*/}}
{{- define "exam-results.functions" -}}
{{ .Files.Get "functions.yaml" }}
{{- end }}

{{/* The same list as a map: values key -> {name, access}, read from functions.yaml. */}}
{{- define "exam-results.functionTable" -}}
{{- range (include "exam-results.functions" . | fromYaml).functions }}
{{ .key }}: {name: {{ .name }}, access: {{ .access }}}
{{- end }}
{{- end }}

{{/*
A function's settings: its block under functions.<key>, or, for a function of
functions.yaml that has no block yet (one just added), the block of its access
under newFunctionDefaults. A block is used whole, never merged with the
defaults (Helm's merge skips zero values, so minScale: 0 or enabled: false
would be lost). Use as
  (include "exam-results.functionValues" (dict "root" $ "key" .key "access" .access) | fromYaml)
*/}}
{{- define "exam-results.functionValues" -}}
{{- $own := index .root.Values.functions .key -}}
{{- toYaml ($own | default (index .root.Values.newFunctionDefaults .access)) -}}
{{- end }}

{{- define "exam-results.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "exam-results.commonLabels" -}}
helm.sh/chart: {{ include "exam-results.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: exam-results
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Selector labels of the PgBouncer pods (contract: name pgbouncer, component pooler). */}}
{{- define "exam-results.pgbouncer.selectorLabels" -}}
app.kubernetes.io/name: pgbouncer
app.kubernetes.io/component: pooler
app.kubernetes.io/part-of: exam-results
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels shared by all function pods. */}}
{{- define "exam-results.function.commonSelectorLabels" -}}
app.kubernetes.io/component: function
app.kubernetes.io/part-of: exam-results
{{- end }}

{{/* Selector labels of the migration Job's pods. */}}
{{- define "exam-results.migrations.selectorLabels" -}}
app.kubernetes.io/name: exam-results-migrations
app.kubernetes.io/component: migrations
app.kubernetes.io/part-of: exam-results
{{- end }}

{{/* Selector of the Postgres instance pods (CloudNativePG labels). */}}
{{- define "exam-results.postgres.selectorLabels" -}}
cnpg.io/cluster: {{ .Values.postgres.clusterName }}
{{- end }}

{{- define "exam-results.pgbouncer.host" -}}
{{ printf "pgbouncer.%s.svc" .Release.Namespace }}
{{- end }}

{{/* image reference from {repository, tag, digest}; "tag" falls back to .default. */}}
{{- define "exam-results.imageRef" -}}
{{- $tag := .image.tag | default .default -}}
{{- if .image.digest -}}
{{ printf "%s@%s" .image.repository .image.digest }}
{{- else -}}
{{ printf "%s:%s" .image.repository $tag }}
{{- end -}}
{{- end }}

{{/* Function image: <repository>/<function name>:<tag>|@<digest> */}}
{{- define "exam-results.function.image" -}}
{{- $img := .root.Values.image -}}
{{- $own := .fn.image | default dict -}}
{{- $repo := printf "%s/%s" $img.repository .name -}}
{{- if $own.digest -}}
{{ printf "%s@%s" $repo $own.digest }}
{{- else -}}
{{ printf "%s:%s" $repo ($own.tag | default $img.tag | default .root.Chart.AppVersion) }}
{{- end -}}
{{- end }}

{{/* Client connections one function can open to PgBouncer at max scale. */}}
{{- define "exam-results.function.maxClientConnections" -}}
{{- $fn := .fn -}}
{{- $perPod := int $fn.database.poolSize -}}
{{- if and (eq .access "read") $fn.database.readFallback -}}
{{- $perPod = mul $perPod 2 -}}
{{- end -}}
{{ mul (int $fn.autoscaling.maxScale) $perPod }}
{{- end }}

{{/*
TLS to PostgreSQL: the volume holding the CA certificate as ca.crt, and the
libpq environment that verifies the server with it. Called with
(dict "root" $ "configMap" <ConfigMap name used when database.tls.caBundle is set>).
*/}}
{{- define "exam-results.postgresCA.volume" -}}
{{- $tls := .root.Values.database.tls -}}
- name: postgres-ca
  {{- if $tls.caBundle }}
  configMap:
    name: {{ .configMap }}
    items:
      - {key: ca.crt, path: ca.crt}
  {{- else }}
  secret:
    secretName: {{ $tls.caSecret.secretName | default .root.Values.database.existingSecret }}
    items:
      - {key: {{ $tls.caSecret.key }}, path: ca.crt}
    defaultMode: 0444
  {{- end }}
{{- end }}

{{- define "exam-results.postgresCA.mountPath" -}}
/etc/postgres-ca
{{- end }}

{{- define "exam-results.postgresCA.libpqEnv" -}}
- {name: PGSSLMODE, value: {{ .Values.database.tls.sslmode | quote }}}
- {name: PGSSLROOTCERT, value: {{ printf "%s/ca.crt" (include "exam-results.postgresCA.mountPath" .) | quote }}}
{{- end }}

{{/*
NetworkPolicy peers of the database: the CloudNativePG instance pods, or the
external database's address ranges (postgres.provider external, e.g. RDS).
*/}}
{{- define "exam-results.postgres.egressPeers" -}}
{{- if eq .Values.postgres.provider "external" }}
{{- range .Values.postgres.external.cidrs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- else }}
- podSelector:
    matchLabels:
      {{- include "exam-results.postgres.selectorLabels" . | nindent 6 }}
  {{- with .Values.postgres.namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Whether the chart renders the policies that select the CloudNativePG pods. */}}
{{- define "exam-results.postgres.policiesInRelease" -}}
{{- if and (eq .Values.postgres.provider "cloudnative-pg") (not .Values.postgres.namespace) }}true{{ end -}}
{{- end }}

{{/* Selector labels of the `helm test` Pods. */}}
{{- define "exam-results.tests.selectorLabels" -}}
app.kubernetes.io/name: exam-results-tests
app.kubernetes.io/component: chart-test
app.kubernetes.io/part-of: exam-results
{{- end }}

{{/* Selector labels of the partition-upkeep CronJob's pods. */}}
{{- define "exam-results.partitionUpkeep.selectorLabels" -}}
app.kubernetes.io/name: partition-upkeep
app.kubernetes.io/component: database-upkeep
app.kubernetes.io/part-of: exam-results
{{- end }}
