{{- /*
The normal and the gray Deployment (bizcloud/release/templates/stateless/40-workloads.yaml.j2).
Surge one, never go below the desired count, so a rollout never leaves users without a Ready pod.
*/ -}}
{{- define "bizcloud.workloads" -}}
{{- $p := . -}}
{{- range $p.workloads }}
{{- $w := dict "p" $p "w" . -}}
{{- $text := include "bizcloud.deployment" $w -}}
{{- include "bizcloud.emit" (dict "p" $p "text" $text) }}
{{- end }}
{{- end }}

{{- define "bizcloud.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .w.name | toJson }}
  namespace: {{ .p.namespace | toJson }}
  labels: {{ include "bizcloud.workloadLabels" . }}
spec:
  replicas: {{ .w.replicas | toJson }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "bizcloud.selector" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    {{- include "bizcloud.pod" . | nindent 4 }}
{{- end }}

{{- /* Every object of one service, in the order the Jinja2 set renders them. */ -}}
{{- define "bizcloud.set" -}}
{{- include "bizcloud.commonHead" . }}
{{- include "bizcloud.workloads" . }}
{{- include "bizcloud.pdbs" . }}
{{- include "bizcloud.manifests" . }}
{{- end }}
