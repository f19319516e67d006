{{/* Name of every object: fullnameOverride, else the release name (with "-abflow" unless it has it). */}}
{{- define "abflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains "abflow" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-abflow" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels the pods are selected by (the same as abflow k8s render). */}}
{{- define "abflow.selector" -}}
app.kubernetes.io/instance: {{ include "abflow.fullname" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* Labels of the gateway's pods: selector plus the name. */}}
{{- define "abflow.podLabels" -}}
app.kubernetes.io/name: abflow
{{ include "abflow.selector" . }}
{{- end -}}

{{/* Labels of every object but the component: the pods' plus Helm's bookkeeping. */}}
{{- define "abflow.baseLabels" -}}
app.kubernetes.io/name: abflow
app.kubernetes.io/instance: {{ include "abflow.fullname" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of the gateway's objects. */}}
{{- define "abflow.labels" -}}
{{ include "abflow.baseLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "abflow.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if contains "@" .Values.image.repository -}}
{{- .Values.image.repository -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The store URL, by reference to a Secret, plus extra environment. */}}
{{- define "abflow.env" -}}
- name: ABFLOW_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "store.existingSecret: the Secret holding the store URL" .Values.store.existingSecret }}
      key: {{ .Values.store.key }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A CLI container (migrations, rollout ticks): name, args as a list. */}}
{{- define "abflow.cliContainer" -}}
- name: {{ .name }}
  image: {{ include "abflow.image" .root }}
  {{- with .root.Values.image.pullPolicy }}
  imagePullPolicy: {{ . }}
  {{- end }}
  args: {{ toJson .args }}
  env:
    {{- include "abflow.env" .root | nindent 4 }}
  {{- with .root.Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "abflow.containerSecurity" . | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{- define "abflow.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "abflow.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling and pull secrets, only when set. */}}
{{- define "abflow.podExtras" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* "<fullname>-rollout-<key>" within 52 characters; a hash of the key ends it when the key
     is not already a name or the name is too long (as abflow k8s render does). */}}
{{- define "abflow.cronName" -}}
{{- $slug := regexReplaceAll "[^a-z0-9-]+" (lower .key) "-" | trimAll "-" -}}
{{- $name := printf "%s-rollout-%s" .fullname $slug -}}
{{- if and (eq $slug .key) (le (len $name) 52) -}}
{{- $name -}}
{{- else -}}
{{- $digest := sha256sum .key | trunc 8 -}}
{{- printf "%s-%s" (regexReplaceAll "-+$" (trunc 43 $name) "") $digest -}}
{{- end -}}
{{- end -}}

{{/* Where the live monitor runs: deployment, gateway or off (monitor.enabled false: off). */}}
{{- define "abflow.monitorMode" -}}
{{- if .Values.monitor.enabled -}}
{{- .Values.monitor.mode | default "deployment" -}}
{{- else -}}
off
{{- end -}}
{{- end -}}

{{/* Refuse values the gateway or the cluster would not take, naming the value. */}}
{{- define "abflow.check" -}}
{{- if ge (add .Values.preStopSeconds .Values.drainTimeoutSeconds) 30 -}}
{{- fail (printf "preStopSeconds + drainTimeoutSeconds must be under the 30 s grace period, got %v" (add .Values.preStopSeconds .Values.drainTimeoutSeconds)) -}}
{{- end -}}
{{- if lt (int .Values.workers) 1 -}}
{{- fail (printf "workers must be at least 1, got %v" .Values.workers) -}}
{{- end -}}
{{- if or (lt (int .Values.replicas) 1) (gt (int .Values.replicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "replicas must be between 1 and autoscaling.maxReplicas (%v), got %v" .Values.autoscaling.maxReplicas .Values.replicas) -}}
{{- end -}}
{{- $monitor := include "abflow.monitorMode" . -}}
{{- if not (has $monitor (list "deployment" "gateway" "off")) -}}
{{- fail (printf "monitor.mode must be one of deployment, gateway, off, got %q" $monitor) -}}
{{- end -}}
{{- if and (ne $monitor "off") (not (ge (float64 .Values.monitor.intervalSeconds) 1.0)) -}}
{{- fail (printf "monitor.intervalSeconds must be a number of seconds, 1 or more, got %v" .Values.monitor.intervalSeconds) -}}
{{- end -}}
{{- $configured := dig "monitor" "interval_seconds" 0 .Values.config -}}
{{- if and (eq $monitor "deployment") (gt (float64 $configured) 0.0) -}}
{{- fail (printf "config.monitor.interval_seconds is %v, so the gateways run the monitor themselves, and monitor.mode deployment would run abflow monitor beside them: set monitor.mode=gateway, or config.monitor.interval_seconds to 0" $configured) -}}
{{- end -}}
{{- if and .Values.keda.enabled (not .Values.keda.prometheusServerAddress) -}}
{{- fail "keda.prometheusServerAddress is required when keda.enabled" -}}
{{- end -}}
{{- end -}}
