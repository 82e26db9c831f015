{{- /*
The normal and the gray StatefulSet and their headless Service
(bizcloud/release/templates/stateful/30-service.yaml.j2, 40-workloads.yaml.j2).
*/ -}}
{{- define "bizcloud.workloads" -}}
{{- $p := . -}}
{{- range $p.workloads }}
{{- $text := include "bizcloud.statefulset" (dict "p" $p "w" .) -}}
{{- include "bizcloud.emit" (dict "p" $p "text" $text) }}
{{- end }}
{{- end }}

{{- define "bizcloud.statefulset" -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .w.name | toJson }}
  namespace: {{ .p.namespace | toJson }}
  labels: {{ include "bizcloud.workloadLabels" . }}
spec:
  replicas: {{ .w.replicas | toJson }}
  serviceName: {{ .p.service | toJson }}
  podManagementPolicy: OrderedReady
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "bizcloud.selector" . | nindent 6 }}
  updateStrategy:
    type: RollingUpdate
  template:
    {{- include "bizcloud.pod" . | nindent 4 }}
{{- end }}

{{- /* The headless Service that gives each StatefulSet pod its stable DNS name. */ -}}
{{- define "bizcloud.service" -}}
{{- $text := include "bizcloud.headless" . -}}
{{- include "bizcloud.emit" (dict "p" . "text" $text) }}
{{- end }}

{{- define "bizcloud.headless" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .service | toJson }}
  namespace: {{ .namespace | toJson }}
  labels: {{ .labels | toJson }}
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    app: {{ .service | toJson }}
    bizcloud.io/service: {{ .service | toJson }}
    bizcloud.io/env: {{ .env | toJson }}
  ports:
  {{- range $name, $port := .ports }}
    - {name: {{ $name | toJson }}, port: {{ $port | toJson }}, targetPort: {{ $name | toJson }}}
  {{- else }}
    - {name: none, port: 1}
  {{- end }}
{{- end }}

{{- /* Every object of one service, in the order the Jinja2 set renders them. */ -}}
{{- define "bizcloud.set" -}}
{{- include "bizcloud.commonHead" . }}
{{- include "bizcloud.service" . }}
{{- include "bizcloud.workloads" . }}
{{- include "bizcloud.pdbs" . }}
{{- include "bizcloud.manifests" . }}
{{- end }}
