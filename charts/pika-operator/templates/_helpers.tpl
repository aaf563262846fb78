{{- define "pika-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "pika-operator.serviceAccountName" -}}
{{- default (include "pika-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "pika-operator.selectorLabels" -}}
app.kubernetes.io/name: pika-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pika-operator.labels" -}}
{{ include "pika-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}
