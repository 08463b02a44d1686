{{/*
Render-time checks. Each failure names the values involved and the numbers,
so `helm template`/`helm install` stops with a message an operator can act on.
*/}}
{{/* Seconds of a duration written as the schema allows: 0, or <h>h<m>m<s>s with each part optional. */}}
{{- define "exam-results.durationSeconds" -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | int -}}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | int -}}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | int -}}
{{ add (mul $h 3600) (mul $m 60) $s }}
{{- end }}

{{- define "exam-results.checks" -}}
{{- $v := .Values -}}
{{- $table := include "exam-results.functionTable" . | fromYaml -}}
{{- $p := $v.pgbouncer -}}

{{- /* 1. Client side: every function at max scale must fit PgBouncer. */ -}}
{{- $total := 0 -}}
{{- $parts := list -}}
{{- range $key := keys $table | sortAlpha -}}
{{- $meta := index $table $key -}}
{{- $fn := include "exam-results.functionValues" (dict "root" $ "key" $key "access" $meta.access) | fromYaml -}}
{{- if $fn.enabled -}}
{{- $n := include "exam-results.function.maxClientConnections" (dict "fn" $fn "access" $meta.access) | int -}}
{{- $total = add $total $n -}}
{{- $parts = append $parts (printf "%s %d" $meta.name $n) -}}
{{- end -}}
{{- end -}}
{{- $surviving := max 1 (sub (int $p.replicas) 1) -}}
{{- $capacity := mul (int $p.maxClientConn) $surviving -}}
{{- if gt $total $capacity -}}
{{- fail (printf "pool arithmetic: functions can open %d client connections at max scale (%s; maxScale x poolSize, x2 with readFallback) but PgBouncer accepts only %d (pgbouncer.maxClientConn %d x %d replica(s) left when one of pgbouncer.replicas %d is down). Lower maxScale/poolSize or raise pgbouncer.maxClientConn/replicas." $total (join ", " $parts) $capacity (int $p.maxClientConn) $surviving (int $p.replicas)) -}}
{{- end -}}

{{- /* 2. Server side: PgBouncer's server pools must fit Postgres max_connections. */ -}}
{{- $pg := $v.postgres -}}
{{- range $pool := list (dict "db" $v.database.readWriteDatabase "size" $p.readWritePoolSize "target" "the primary") (dict "db" $v.database.readOnlyDatabase "size" $p.readOnlyPoolSize "target" "one replica (all read connections can land on one)") -}}
{{- $perPod := add (int $pool.size) (int $p.reservePoolSize) -}}
{{- $need := add (mul (int $p.replicas) $perPod) (int $pg.reservedConnections) -}}
{{- if gt $need (int $pg.maxConnections) -}}
{{- fail (printf "pool arithmetic: PgBouncer can open %d server connections to %s for database %s (%d replicas x (pool size %d + reservePoolSize %d)) plus postgres.reservedConnections %d = %d, above postgres.maxConnections %d. Lower the pool sizes or replicas, or raise max_connections." (mul (int $p.replicas) $perPod) $pool.target $pool.db (int $p.replicas) (int $pool.size) (int $p.reservePoolSize) (int $pg.reservedConnections) $need (int $pg.maxConnections)) -}}
{{- end -}}
{{- end -}}

{{- /* 3. Per function: scale bounds, BYO revision names, traffic blocks. */ -}}
{{- range $key := keys $table | sortAlpha -}}
{{- $meta := index $table $key -}}
{{- $fn := include "exam-results.functionValues" (dict "root" $ "key" $key "access" $meta.access) | fromYaml -}}
{{- if $fn.enabled -}}
{{- $as := $fn.autoscaling -}}
{{- $where := printf "functions.%s" $key -}}
{{- if gt (int $as.minScale) (int $as.maxScale) -}}
{{- fail (printf "%s.autoscaling: minScale %d is above maxScale %d" $where (int $as.minScale) (int $as.maxScale)) -}}
{{- end -}}
{{- if gt (int $as.initialScale) (int $as.maxScale) -}}
{{- fail (printf "%s.autoscaling: initialScale %d is above maxScale %d" $where (int $as.initialScale) (int $as.maxScale)) -}}
{{- end -}}
{{- if and (eq $as.metric "concurrency") (gt (int $fn.containerConcurrency) 0) (gt (int $as.target) (int $fn.containerConcurrency)) -}}
{{- fail (printf "%s: autoscaling.target %d is above containerConcurrency %d (the soft target must not exceed the hard limit)" $where (int $as.target) (int $fn.containerConcurrency)) -}}
{{- end -}}
{{- $stmt := int ($fn.database.statementTimeoutMs | default $v.functionDefaults.database.statementTimeoutMs) -}}
{{- if and (gt (int $p.serverStatementTimeoutMs) 0) (le (int $p.serverStatementTimeoutMs) $stmt) -}}
{{- fail (printf "%s: database.statementTimeoutMs %d must be below pgbouncer.serverStatementTimeoutMs %d (the server-side backstop)" $where $stmt (int $p.serverStatementTimeoutMs)) -}}
{{- end -}}
{{- if ge (int $v.functionDefaults.shutdownDrainSeconds) (int $fn.timeoutSeconds) -}}
{{- fail (printf "%s: functionDefaults.shutdownDrainSeconds %d must be below timeoutSeconds %d" $where (int $v.functionDefaults.shutdownDrainSeconds) (int $fn.timeoutSeconds)) -}}
{{- end -}}
{{- $managed := list "METRICS_PORT" "DATABASE_USER" "DATABASE_PASSWORD" "DATABASE_URL" "READ_FALLBACK_DATABASE_URL" "MAX_REPLICA_LAG_SECONDS" "WRITE_TOKENS" "DATABASE_POOL_SIZE" "DATABASE_POOL_TIMEOUT_MS" "DATABASE_CONNECT_TIMEOUT_MS" "DATABASE_STATEMENT_TIMEOUT_MS" "LOG_LEVEL" "LOG_FORMAT" "SHUTDOWN_DRAIN_SECONDS" "EXAM_YEAR_MIN" "EXAM_YEAR_MAX" -}}
{{- range $fn.extraEnv | default list -}}
{{- if has .name $managed -}}
{{- fail (printf "%s.extraEnv: %s is set by the chart; use the matching value instead of extraEnv" $where .name) -}}
{{- end -}}
{{- end -}}
{{- if $fn.revision -}}
{{- /* <service>-<revision>-<6 hex of the template's hash> */ -}}
{{- $rev := printf "%s-%s-123456" $meta.name $fn.revision -}}
{{- if gt (len $rev) 63 -}}
{{- fail (printf "%s.revision: %q makes revision names of %d characters (<service>-<revision>-<6-character template hash>), the limit is 63" $where $fn.revision (len $rev)) -}}
{{- end -}}
{{- end -}}
{{- /* Knative's autoscaler limits (knative.dev/serving pkg/apis/autoscaling). */ -}}
{{- $delay := include "exam-results.durationSeconds" $as.scaleDownDelay | int -}}
{{- if gt $delay 3600 -}}
{{- fail (printf "%s.autoscaling.scaleDownDelay %q is above Knative's maximum of 1h" $where $as.scaleDownDelay) -}}
{{- end -}}
{{- if hasKey $as "window" -}}
{{- $window := include "exam-results.durationSeconds" $as.window | int -}}
{{- if or (lt $window 6) (gt $window 3600) -}}
{{- fail (printf "%s.autoscaling.window %q is outside Knative's bounds of 6s to 1h" $where $as.window) -}}
{{- end -}}
{{- end -}}
{{- if and (eq (int $as.initialScale) 0) (not $v.knative.allowZeroInitialScale) -}}
{{- fail (printf "%s.autoscaling.initialScale 0 is refused by Knative unless the cluster's config-autoscaler sets allow-zero-initial-scale: \"true\"; set knative.allowZeroInitialScale: true if it does" $where) -}}
{{- end -}}
{{- if hasKey $as "activationScale" -}}
{{- if lt (int $as.activationScale) (int $as.minScale) -}}
{{- fail (printf "%s.autoscaling.activationScale %d is below minScale %d" $where (int $as.activationScale) (int $as.minScale)) -}}
{{- end -}}
{{- if gt (int $as.activationScale) (int $as.maxScale) -}}
{{- fail (printf "%s.autoscaling.activationScale %d is above maxScale %d" $where (int $as.activationScale) (int $as.maxScale)) -}}
{{- end -}}
{{- end -}}
{{- if $fn.traffic -}}
{{- $sum := 0 -}}
{{- $tags := dict -}}
{{- range $i, $t := $fn.traffic -}}
{{- $set := 0 -}}
{{- if $t.latestRevision }}{{ $set = add1 $set }}{{ end -}}
{{- if $t.revision }}{{ $set = add1 $set }}{{ end -}}
{{- if $t.revisionName }}{{ $set = add1 $set }}{{ end -}}
{{- if ne (int $set) 1 -}}
{{- fail (printf "%s.traffic[%d]: set exactly one of revision, revisionName or latestRevision: true" $where $i) -}}
{{- end -}}
{{- if and $t.revisionName (not (hasPrefix (printf "%s-" $meta.name) $t.revisionName)) -}}
{{- fail (printf "%s.traffic[%d]: revisionName %q does not belong to service %s (names start with %s-)" $where $i $t.revisionName $meta.name $meta.name) -}}
{{- end -}}
{{- $sum = add $sum (int ($t.percent | default 0)) -}}
{{- if and $t.revision (ne $t.revision ($fn.revision | default "")) -}}
{{- fail (printf "%s.traffic[%d].revision %q is not functions.%s.revision %q: revision names the revision this release creates; name any other revision with revisionName (as the Service's status shows it)" $where $i $t.revision $key ($fn.revision | default "")) -}}
{{- end -}}
{{- with $t.tag -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" .) -}}
{{- fail (printf "%s.traffic[%d].tag %q is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter): Knative refuses it" $where $i .) -}}
{{- end -}}
{{- if gt (len (printf "%s-%s" . $meta.name)) 63 -}}
{{- fail (printf "%s.traffic[%d].tag %q: the tagged route name %s-%s is over 63 characters" $where $i . . $meta.name) -}}
{{- end -}}
{{- if hasKey $tags . -}}
{{- fail (printf "%s.traffic[%d]: tag %q is used twice" $where $i .) -}}
{{- end -}}
{{- $_ := set $tags . true -}}
{{- end -}}
{{- end -}}
{{- if ne (int $sum) 100 -}}
{{- fail (printf "%s.traffic: percents add up to %d, Knative requires 100" $where (int $sum)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* 4. An external database needs its address ranges, or no policy lets anything reach it. */ -}}
{{- if and (eq $v.postgres.provider "external") $v.networkPolicy.enabled (not $v.postgres.external.cidrs) -}}
{{- fail "postgres.provider is external and networkPolicy.enabled is true, but postgres.external.cidrs is empty: list the database's address ranges (for RDS, its DB subnet group's subnets), or PgBouncer and the migration Job cannot reach it" -}}
{{- end -}}

{{- /* 5. Migrations need the SQL files in the chart. */ -}}
{{- if $v.migrations.enabled -}}
{{- $files := .Files.Glob "migrations/*.sql" -}}
{{- if eq (len $files) 0 -}}
{{- fail "migrations.enabled is true but the chart has no migrations/*.sql (knative/exam-results/migrations must link to sql/migrations)" -}}
{{- end -}}
{{- $size := 0 -}}
{{- range $path, $bytes := $files -}}
{{- $size = add $size (len $bytes) -}}
{{- end -}}
{{- if gt $size 900000 -}}
{{- fail (printf "migrations: the SQL files total %d bytes, too close to the 1 MiB ConfigMap limit" $size) -}}
{{- end -}}
{{- end -}}
{{- end }}
