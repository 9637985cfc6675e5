{{- define "ecs-operator.labels" -}}
app.kubernetes.io/name: ecs-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "ecs-operator.selector" -}}
app.kubernetes.io/name: ecs-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
