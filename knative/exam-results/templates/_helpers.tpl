{{/*
Shared helpers. Names are fixed by the interface contract: the Knative
Services are named after the functions and PgBouncer's Service is "pgbouncer",
so one release per namespace.
*/}}

{{/* The functions: values key -> Service name and access (read|write). */}}
{{- define "exam-results.functionTable" -}}
createResult: {name: create-result, access: write}
getResult: {name: get-result, access: read}
listResults: {name: list-results, access: read}
updateResult: {name: update-result, access: write}
deleteResult: {name: delete-result, access: write}
createResultsBatch: {name: create-results-batch, access: write}
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
