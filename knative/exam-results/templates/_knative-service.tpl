{{/*
One Knative Service (serving.knative.dev/v1) for one function.
Called from knative-services.yaml with (dict "root" $ "meta" <functions.yaml entry>).

Knative rules kept here: one container port (Knative sets PORT), probes on
that port, no lifecycle field, metrics on a second port that is listened on
but not declared, timeoutSeconds set, only securityContext fields Knative
accepts without feature flags, its own ServiceAccount.

Revision names: with functions.<key>.revision set (a BYO name, as the CD
pipeline sets it), the revision template is named
  <service>-<revision>-<first 6 hex of sha256 of the rendered template>
so every change of the template (a tuned target, a new image, a chart
upgrade) gets a new name, which Knative requires of BYO names, and an
unchanged template keeps its name. Read the name of the revision a release
created from the Service's status.latestCreatedRevisionName.
*/}}
{{- define "exam-results.knativeService" -}}
{{- $root := .root -}}
{{- $name := .meta.name -}}
{{- $fn := include "exam-results.functionValues" (dict "root" $root "key" .meta.key "access" .meta.access) | fromYaml -}}
{{- if $fn.enabled }}
{{- $args := dict "root" $root "meta" .meta "fn" $fn -}}
{{- $tmplMeta := include "exam-results.knativeService.templateMetadata" $args -}}
{{- $tmplSpec := include "exam-results.knativeService.templateSpec" $args -}}
{{- $revisionName := include "exam-results.revisionName" (dict "name" $name "fn" $fn "body" (print $tmplMeta $tmplSpec)) }}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "exam-results.commonLabels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ $name }}
    app.kubernetes.io/component: function
spec:
  template:
    metadata:
      {{- with $revisionName }}
      name: {{ . }}
      {{- end }}
      {{- $tmplMeta | nindent 6 }}
    spec:
      {{- $tmplSpec | nindent 6 }}
  {{- with $fn.traffic }}
  traffic:
    {{- range . }}
    - {{- if .latestRevision }}
      latestRevision: true
      {{- else if .revision }}
      revisionName: {{ $revisionName }}
      latestRevision: false
      {{- else }}
      revisionName: {{ .revisionName }}
      latestRevision: false
      {{- end }}
      percent: {{ int .percent }}
      {{- with .tag }}
      tag: {{ . }}
      {{- end }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The BYO revision name of a function's template ("" without functions.<key>.revision). */}}
{{- define "exam-results.revisionName" -}}
{{- if .fn.revision -}}
{{ printf "%s-%s-%s" .name .fn.revision (.body | sha256sum | trunc 6) }}
{{- end -}}
{{- end }}

{{/* Revision template metadata without the name: labels and autoscaling annotations. */}}
{{- define "exam-results.knativeService.templateMetadata" -}}
{{- $root := .root -}}
{{- $as := .fn.autoscaling -}}
labels:
  {{- include "exam-results.function.commonSelectorLabels" $root | nindent 2 }}
  app.kubernetes.io/name: {{ .meta.name }}
  app.kubernetes.io/instance: {{ $root.Release.Name }}
  app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
  exam-results/access: {{ .meta.access }}
annotations:
  autoscaling.knative.dev/class: {{ $as.class | quote }}
  autoscaling.knative.dev/metric: {{ $as.metric | quote }}
  autoscaling.knative.dev/target: {{ $as.target | toString | quote }}
  autoscaling.knative.dev/target-utilization-percentage: {{ $as.targetUtilizationPercentage | toString | quote }}
  autoscaling.knative.dev/min-scale: {{ $as.minScale | toString | quote }}
  autoscaling.knative.dev/max-scale: {{ $as.maxScale | toString | quote }}
  autoscaling.knative.dev/initial-scale: {{ $as.initialScale | toString | quote }}
  autoscaling.knative.dev/scale-down-delay: {{ $as.scaleDownDelay | quote }}
  {{- range $key, $annotation := include "exam-results.optionalAutoscalingAnnotations" . | fromYaml }}
  {{- if hasKey $as $key }}
  autoscaling.knative.dev/{{ $annotation }}: {{ index $as $key | toString | quote }}
  {{- end }}
  {{- end }}
{{- end }}

{{/* Per-revision autoscaling settings rendered only when set: values key -> annotation. */}}
{{- define "exam-results.optionalAutoscalingAnnotations" -}}
window: window
panicWindowPercentage: panic-window-percentage
panicThresholdPercentage: panic-threshold-percentage
targetBurstCapacity: target-burst-capacity
activationScale: activation-scale
{{- end }}

{{/* Revision template spec: the pod. */}}
{{- define "exam-results.knativeService.templateSpec" -}}
{{- $root := .root -}}
{{- $name := .meta.name -}}
{{- $access := .meta.access -}}
{{- $auth := .meta.auth | default "public" -}}
{{- $staff := .meta.staff -}}
{{- $fn := .fn -}}
{{- $d := $root.Values.functionDefaults -}}
{{- $secret := $root.Values.database.existingSecret -}}
{{- $login := ternary "reader" "app" (eq $access "read") -}}
{{- $pgb := include "exam-results.pgbouncer.host" $root -}}
{{- $pgbPort := int $root.Values.pgbouncer.port -}}
{{- $rw := $root.Values.database.readWriteDatabase -}}
{{- $ro := $root.Values.database.readOnlyDatabase -}}
serviceAccountName: {{ $name }}
automountServiceAccountToken: false
enableServiceLinks: false
containerConcurrency: {{ int $fn.containerConcurrency }}
timeoutSeconds: {{ int $fn.timeoutSeconds }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ $name }}
    image: {{ include "exam-results.function.image" (dict "root" $root "name" $name "fn" $fn) | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    ports:
      - name: http1
        containerPort: 8080
    env:
      - name: METRICS_PORT
        value: {{ $d.metricsPort | toString | quote }}
      # Least privilege: read functions log in as the reader role, write
      # functions as the app role (keys <login>-username/-password of the
      # connection Secret); never as the owner.
      - name: DATABASE_USER
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $login }}-username
      - name: DATABASE_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $login }}-password
      {{- if eq $access "read" }}
      - name: DATABASE_URL
        value: {{ printf "postgres://$(DATABASE_USER)@%s:%d/%s" $pgb $pgbPort $ro | quote }}
      {{- if $fn.database.readFallback }}
      - name: READ_FALLBACK_DATABASE_URL
        value: {{ printf "postgres://$(DATABASE_USER)@%s:%d/%s" $pgb $pgbPort $rw | quote }}
      {{- end }}
      {{- if $fn.database.maxReplicaLagSeconds }}
      - name: MAX_REPLICA_LAG_SECONDS
        value: {{ $fn.database.maxReplicaLagSeconds | toString | quote }}
      {{- end }}
      {{- else }}
      - name: DATABASE_URL
        value: {{ printf "postgres://$(DATABASE_USER)@%s:%d/%s" $pgb $pgbPort $rw | quote }}
      {{- end }}
      {{- /* functions.yaml's auth: which tokens the function accepts (read tokens also
             for a public function whose staff read unpublished years), or the
             per-client limit of a public one */}}
      {{- if eq $auth "write-token" }}
      - name: WRITE_TOKENS
        valueFrom:
          secretKeyRef:
            name: {{ $root.Values.writeTokens.existingSecret }}
            key: {{ $root.Values.writeTokens.key }}
      {{- end }}
      {{- if or (eq $auth "read-token") (eq ($staff | default "") "read-token") }}
      - name: READ_TOKENS
        valueFrom:
          secretKeyRef:
            name: {{ $root.Values.readTokens.existingSecret }}
            key: {{ $root.Values.readTokens.key }}
      {{- end }}
      {{- if eq $auth "public" }}
      {{- with $d.corsAllowOrigin }}
      - name: CORS_ALLOW_ORIGIN
        value: {{ . | quote }}
      {{- end }}
      {{- $rl := $d.rateLimit }}
      - name: RATE_LIMIT_PER_SECOND
        value: {{ $rl.perSecond | toString | quote }}
      - name: RATE_LIMIT_BURST
        value: {{ $rl.burst | toString | quote }}
      {{- if $rl.perSecond }}
      - name: RATE_LIMIT_CLIENT_HEADER
        value: {{ $rl.clientHeader | quote }}
      - name: RATE_LIMIT_TRUSTED_HOPS
        value: {{ $rl.trustedHops | toString | quote }}
      {{- end }}
      {{- end }}
      - name: DATABASE_POOL_SIZE
        value: {{ $fn.database.poolSize | toString | quote }}
      - name: DATABASE_POOL_TIMEOUT_MS
        value: {{ $fn.database.poolTimeoutMs | default $d.database.poolTimeoutMs | toString | quote }}
      - name: DATABASE_CONNECT_TIMEOUT_MS
        value: {{ $fn.database.connectTimeoutMs | default $d.database.connectTimeoutMs | toString | quote }}
      - name: DATABASE_STATEMENT_TIMEOUT_MS
        value: {{ $fn.database.statementTimeoutMs | default $d.database.statementTimeoutMs | toString | quote }}
      - name: LOG_LEVEL
        value: {{ $fn.logLevel | default $d.logLevel | quote }}
      - name: LOG_FORMAT
        value: {{ $d.logFormat | quote }}
      - name: SHUTDOWN_DRAIN_SECONDS
        value: {{ $d.shutdownDrainSeconds | toString | quote }}
      - name: TOKIO_WORKER_THREADS
        value: {{ $d.workerThreads | toString | quote }}
      - name: EXAM_YEAR_MIN
        value: {{ $d.examYearMin | toString | quote }}
      - name: EXAM_YEAR_MAX
        value: {{ $d.examYearMax | toString | quote }}
      {{- with $fn.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    # No periodSeconds: queue-proxy probes the container aggressively until
    # it is ready (Knative refuses failureThreshold and timeoutSeconds then).
    readinessProbe:
      httpGet:
        path: /readyz
        port: 8080
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 10
      failureThreshold: 3
      timeoutSeconds: 2
    resources:
      {{- toYaml $fn.resources | nindent 6 }}
    securityContext:
      {{- toYaml $d.securityContext | nindent 6 }}
{{- end }}
