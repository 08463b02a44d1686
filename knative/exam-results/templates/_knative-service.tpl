{{/*
One Knative Service (serving.knative.dev/v1) for one function.
Called from ksvc-<function>.yaml with (dict "root" $ "key" "<valuesKey>").

Knative rules kept here: one container port (Knative sets PORT), probes on
that port, no lifecycle field, metrics on a second port that is listened on
but not declared, timeoutSeconds set, only securityContext fields Knative
accepts without feature flags, its own ServiceAccount.
*/}}
{{- define "exam-results.knativeService" -}}
{{- $root := .root -}}
{{- $key := .key -}}
{{- $meta := index (include "exam-results.functionTable" $root | fromYaml) $key -}}
{{- $name := $meta.name -}}
{{- $access := $meta.access -}}
{{- $fn := index $root.Values.functions $key -}}
{{- $d := $root.Values.functionDefaults -}}
{{- if $fn.enabled }}
{{- $as := $fn.autoscaling }}
{{- $secret := $root.Values.database.existingSecret }}
{{- $pgb := include "exam-results.pgbouncer.host" $root }}
{{- $pgbPort := int $root.Values.pgbouncer.port }}
{{- $rw := $root.Values.database.readWriteDatabase }}
{{- $ro := $root.Values.database.readOnlyDatabase }}
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
      {{- if $fn.revision }}
      name: {{ printf "%s-%s" $name $fn.revision }}
      {{- end }}
      labels:
        {{- include "exam-results.function.commonSelectorLabels" $root | nindent 8 }}
        app.kubernetes.io/name: {{ $name }}
        app.kubernetes.io/instance: {{ $root.Release.Name }}
        app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
        exam-results/access: {{ $access }}
      annotations:
        autoscaling.knative.dev/class: {{ $as.class | quote }}
        autoscaling.knative.dev/metric: {{ $as.metric | quote }}
        autoscaling.knative.dev/target: {{ $as.target | toString | quote }}
        autoscaling.knative.dev/target-utilization-percentage: {{ $as.targetUtilizationPercentage | toString | quote }}
        autoscaling.knative.dev/min-scale: {{ $as.minScale | toString | quote }}
        autoscaling.knative.dev/max-scale: {{ $as.maxScale | toString | quote }}
        autoscaling.knative.dev/initial-scale: {{ $as.initialScale | toString | quote }}
        autoscaling.knative.dev/scale-down-delay: {{ $as.scaleDownDelay | quote }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      containerConcurrency: {{ int $fn.containerConcurrency }}
      timeoutSeconds: {{ int $fn.timeoutSeconds }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
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
            - name: DATABASE_USER
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: username
            - name: DATABASE_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: password
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
            - name: WRITE_TOKENS
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.writeTokens.existingSecret }}
                  key: {{ $root.Values.writeTokens.key }}
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
            {{- toYaml . | nindent 12 }}
            {{- end }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: 8080
            failureThreshold: 3
            timeoutSeconds: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: 8080
            periodSeconds: 10
            failureThreshold: 3
            timeoutSeconds: 2
          resources:
            {{- toYaml $fn.resources | nindent 12 }}
          securityContext:
            {{- toYaml $d.securityContext | nindent 12 }}
  {{- with $fn.traffic }}
  traffic:
    {{- range . }}
    - {{- if .latestRevision }}
      latestRevision: true
      {{- else if .revision }}
      revisionName: {{ printf "%s-%s" $name .revision }}
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
