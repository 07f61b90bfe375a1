{{/* The release's resource name prefix (63 characters at most, DNS-1123). */}}
{{- define "kafclaw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafclaw.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafclaw.labels" -}}
{{ include "kafclaw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kafclaw.configMapName" -}}
{{- default (include "kafclaw.fullname" .) .Values.topology.existingConfigMap -}}
{{- end -}}

{{- define "kafclaw.tokenSecretName" -}}
{{- default (printf "%s-http-token" (include "kafclaw.fullname" .)) .Values.http.token.existingSecret -}}
{{- end -}}

{{/* librdkafka property -> KAFCLAW_KAFKA_* variable (engine/src/kafka/settings.rs). */}}
{{- define "kafclaw.kafkaEnv" -}}
{{- printf "KAFCLAW_KAFKA_%s" (. | upper | replace "." "_" | replace "-" "_") -}}
{{- end -}}
